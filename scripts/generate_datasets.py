"""Generate tunebook's shipped task datasets, deterministically (seeded), into data-templates/.

    .venv/bin/python scripts/generate_datasets.py          # rewrite every task
    .venv/bin/python scripts/generate_datasets.py triage   # one task

Why generated: the tasks are fictional (Voltline, an electronics retailer), and a seeded script
documents exactly how every label follows from the text, so the data is honest and learnable:

- triage: the label follows from cue phrases alone. Safety hazards, outages and fraud are
  critical; a broken core function or a lost order is high; a degraded or annoying issue is
  medium; questions are low. Openers and closers are shared by every label, so only the cues
  carry the answer. Classes are balanced. Messages stay under 60 words.
- support: replies in one brand voice (thanks, the exact answer, a next step, "The Voltline
  Team" sign-off), under 120 words, a quarter of them two-turn threads.
- clauses: contracts under 350 words built from clause variants; the answer JSON
  (answer.schema.json) is computed from the clauses actually written, with null when a clause
  is absent, and years converted to months.
- support-pref: the same prompts with an on-brand reply (chosen) and an off-brand one
  (rejected: curt, blaming, over-promising or sloppy).

Every task is deduplicated (exact, then char-5 Jaccard >= 0.8, stricter than any gate
threshold) and split 80/10/10 by ``tunebook.data.split`` (stratified for triage, clusters
kept together). Rows begin with the task's system prompt file, verbatim.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable

from tunebook.data import neardup, split
from tunebook.paths import DATA_TEMPLATES

PROMPTS = DATA_TEMPLATES / "prompts"
OUT = DATA_TEMPLATES / "datasets"
SEED = 20260101
DEDUP_THRESHOLD = 0.8

PRODUCTS = [
    ("Nimbus 14 laptop", "laptop"), ("Nimbus 16 Pro laptop", "laptop"),
    ("Pulse ANC headphones", "headphones"), ("Aura X2 earbuds", "earbuds"),
    ("Zephyr 55-inch 4K TV", "TV"), ("Zephyr 65-inch OLED TV", "TV"),
    ("Orbit 3 smartwatch", "smartwatch"), ("Flux 65W charger", "charger"),
    ("Stratus mesh router", "router"), ("Vertex gaming mouse", "mouse"),
    ("Resonance soundbar", "soundbar"), ("Lumen smart bulb kit", "smart bulbs"),
    ("Tempo e-reader", "e-reader"), ("Halo 10 tablet", "tablet"),
    ("Volt power bank 20k", "power bank"), ("Kinetic robot vacuum", "robot vacuum"),
    ("Nova 8 phone", "phone"), ("Apex mechanical keyboard", "keyboard"),
    ("Prism 27-inch monitor", "monitor"), ("Cinder space heater", "space heater"),
]
NAMES = ["Sam", "Priya", "Marco", "Aisha", "Tom", "Lena", "Diego", "Mei", "Jonas", "Fatima",
         "Owen", "Chloe", "Ravi", "Nadia", "Luca", "Grace", "Yusuf", "Hana", "Ben", "Sofia"]


def order_no(rng: random.Random) -> str:
    return f"VL-{rng.randint(10000, 99999)}"


def read_prompt(name: str) -> str:
    return (PROMPTS / f"{name}-system.txt").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# triage
# --------------------------------------------------------------------------------------------
OPENERS = ["", "Hi,", "Hello,", "Hey team,", "Hi Voltline,", "Good morning,", "Hello there,",
           "Quick one:", "Hi support,", "Urgent?"]
CLOSERS = ["", "Thanks.", "Please advise.", "Thank you!", "Cheers.", "Let me know.",
           "Any help appreciated.", "Regards.", "What should I do?", "Order {order}."]
CONTEXT = ["", "I bought it last week.", "Bought it two months ago.", "It was a gift.",
           "I got it in your downtown store.", "Ordered online.", "It is still under warranty.",
           "This is my second one.", "Had it since spring.", "Using it at home."]

TRIAGE = {
    "critical": [
        "my {p} started smoking while charging",
        "my {p} sparked when I plugged it in",
        "there is a burning smell coming from my {p}",
        "the battery in my {p} is swollen and the case is bulging",
        "my {p} caught fire on the desk",
        "I got an electric shock from my {p}",
        "my {p} is so hot it melted the plastic",
        "your website is down and nobody can check out",
        "the checkout page fails for every customer, the site looks down",
        "your app is down for everyone, total outage",
        "I see unauthorized charges from Voltline on my card",
        "someone hacked my Voltline account and placed orders",
        "fraud: orders I never made are shipping to a stranger",
        "someone used my card to buy a {p} on your site",
        "my account was taken over and the password changed by someone else",
    ],
    "high": [
        "my {p} will not turn on at all",
        "my {p} is dead on arrival",
        "my {p} stopped working completely",
        "my {p} does not charge at all anymore",
        "the screen of my {p} stays completely black",
        "my {p} is stuck in a boot loop and unusable",
        "my order never arrived and tracking has not moved in two weeks",
        "the package with my {p} is marked delivered but it is not here",
        "I was charged but my order does not exist in my account",
        "I cannot log in to my account at all, the reset link fails",
        "my {p} keeps shutting off seconds after power on",
        "the {p} you sent is the wrong model and I cannot use it",
        "my {p} has no sound at all from any output",
        "my {p} will not connect to anything, it is useless",
        "my refund was approved a month ago and never paid",
    ],
    "medium": [
        "the battery on my {p} drains a bit faster than expected",
        "my {p} drops the wifi now and then",
        "the fan on my {p} is louder than I would like",
        "the screen on my {p} flickers occasionally",
        "my delivery is running two days late",
        "the box of my {p} arrived dented but the item works",
        "my {p} reconnects to bluetooth every so often",
        "the app for my {p} feels slow and laggy",
        "my {p} takes a long time to start up",
        "the colour on my {p} looks a little off",
        "my {p} sometimes lags for a second",
        "the strap on my {p} is a bit uncomfortable",
        "the charging cable for my {p} is shorter than I hoped",
        "the firmware update on my {p} was annoying and slow",
        "my {p} makes a faint buzzing noise at times",
    ],
    "low": [
        "what is your return window for a {p}?",
        "do you price match other stores on the {p}?",
        "how do I pair my {p} with my phone?",
        "can I change the delivery address on my order?",
        "do you ship the {p} to Canada?",
        "what are your store opening hours on Sunday?",
        "is there a student discount on the {p}?",
        "does the {p} come with a warranty, and how long?",
        "can I pick up my order in store instead?",
        "which colours does the {p} come in?",
        "is the {p} compatible with a Mac?",
        "how do I update the firmware on my {p}?",
        "can I add gift wrapping to my order?",
        "when will the {p} be back in stock?",
        "do you recycle old electronics like a {p}?",
    ],
}


def triage_rows(rng: random.Random, per_label: int) -> list[dict]:
    system = read_prompt("triage")
    rows = []
    for label, cues in TRIAGE.items():
        for _ in range(per_label):
            product = rng.choice(PRODUCTS)[0]
            cue = rng.choice(cues).format(p=product)
            cue = cue[0].upper() + cue[1:]
            if not cue.endswith("?"):
                cue += "."
            parts = [rng.choice(OPENERS), rng.choice(CONTEXT) if rng.random() < 0.5 else "",
                     cue, rng.choice(CONTEXT) if rng.random() < 0.3 else "",
                     rng.choice(CLOSERS).format(order=order_no(rng))]
            if rng.random() < 0.5:  # context before or after the cue
                parts[1], parts[3] = parts[3], parts[1]
            kept = [p for p in parts if p]
            for i in range(1, len(kept)):
                if kept[i - 1].endswith(","):  # "Hi, my laptop…", not "Hi, My laptop…"
                    kept[i] = kept[i][0].lower() + kept[i][1:]
            text = " ".join(kept)
            rows.append({"messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": text},
                {"role": "assistant", "content": label},
            ]})
    rng.shuffle(rows)
    return rows


# --------------------------------------------------------------------------------------------
# support (and the prompts of support-pref)
# --------------------------------------------------------------------------------------------
SUPPORT = {
    "order_status": {
        "ask": ["Where is my order {order}? I ordered the {p} {days} days ago.",
                "My {p} (order {order}) still hasn't shipped. Any update?",
                "Can you tell me when order {order} will arrive? It's the {p}.",
                "I've been waiting {days} days for my {p}, order {order}. What's going on?"],
        "body": ["I checked order {order}: your {p} left our warehouse and is with the courier.",
                 "Order {order} is packed and is due to ship within one business day.",
                 "Your {p} on order {order} is on its way and should arrive in two to three days."],
        "next": ["You'll get a tracking email the moment it moves, and you can follow it under "
                 "Orders in your account.",
                 "If it hasn't arrived by Friday, reply here and we'll chase the courier for you.",
                 "You can track it any time under Orders in your Voltline account."],
    },
    "returns": {
        "ask": ["I want to return my {p}. How does that work?",
                "The {p} isn't for me. Can I send it back? Order {order}.",
                "How do I return a {p} I bought {days} days ago?",
                "Can I return an opened {p}? It's order {order}."],
        "body": ["You can return your {p} within 30 days of delivery, opened or not, as long as "
                 "it's complete.",
                 "Returns are free within 30 days, and opened items are fine if all the parts "
                 "are included.",
                 "Your {p} is inside our 30-day return window, so a return is no problem."],
        "next": ["Start it under Orders > Return item and print the prepaid label; your refund "
                 "goes out within five business days of us receiving it.",
                 "Drop it at any Voltline store or use the prepaid label from your account; we "
                 "refund to the original payment method.",
                 "Open order {order}, choose Return item, and we'll email a free label."],
    },
    "warranty": {
        "ask": ["My {p} stopped working after {months} months. Is it covered by warranty?",
                "Is a faulty {p} covered? I've had it {months} months.",
                "The {p} I bought {months} months ago has a fault. What are my options?",
                "Does the warranty cover my {p}? It broke after {months} months."],
        "body": ["Your {p} has a two-year Voltline warranty, so a fault after {months} months is "
                 "covered.",
                 "Good news: at {months} months your {p} is well inside its two-year warranty.",
                 "Faults within two years are covered, and your {p} qualifies."],
        "next": ["Book a free repair under Support > Warranty claim, and we'll send a prepaid box.",
                 "Bring it to any Voltline store with your receipt, or start a claim online and "
                 "we'll collect it.",
                 "Start a warranty claim in your account; if we can't repair it, we replace it."],
    },
    "setup": {
        "ask": ["How do I set up my new {p}?",
                "I can't get my {p} connected to wifi. Any tips?",
                "What's the best way to pair the {p} with my phone?",
                "The {p} setup keeps failing at the last step. Help?"],
        "body": ["Let's get your {p} running: hold the power button for ten seconds to reset it, "
                 "then open the Voltline app and tap Add device.",
                 "First make sure the {p} is charged and on the latest firmware, then pair it "
                 "from the Voltline app rather than the system settings.",
                 "Most setup hiccups clear with a restart of both the {p} and your router, then "
                 "a fresh pairing from the Voltline app."],
        "next": ["If it still won't connect, reply with the message you see and we'll walk you "
                 "through it.",
                 "Our setup guide for the {p} is under Support > Guides if you'd like pictures.",
                 "Still stuck? Book a free video call with our setup team in the app."],
    },
    "damaged": {
        "ask": ["My {p} arrived damaged. Order {order}. What now?",
                "The screen on my new {p} was cracked out of the box.",
                "The {p} from order {order} came with a broken part.",
                "Box was crushed and my {p} is scratched. Can you help?"],
        "body": ["I'm sorry your {p} arrived damaged; that's not the welcome we want for you.",
                 "I'm sorry about the damage to your {p}. You won't pay for any of this.",
                 "Thanks for the details, and sorry the {p} reached you in that state."],
        "next": ["Send us a photo by replying here and we'll ship a replacement today, with a free "
                 "return label for the damaged one.",
                 "Reply with a photo of the damage and we'll send a new one straight away.",
                 "We've flagged order {order}; a photo of the damage is all we need to replace "
                 "it."],
    },
    "refund": {
        "ask": ["When will I get my refund for the {p}? I returned it {days} days ago.",
                "My refund for order {order} hasn't shown up yet.",
                "I sent back the {p} but no money yet. Order {order}.",
                "How long do refunds take? I returned my {p} {days} days ago."],
        "body": ["Refunds go out within five business days of the return reaching us, and your "
                 "bank may take three more days to show it.",
                 "Your return for order {order} is logged, and the refund goes back to your "
                 "original payment method.",
                 "We received your {p} and the refund is being processed now."],
        "next": ["If it's not in your account within a week, reply here and we'll trace it.",
                 "You'll get an email confirmation the moment it's sent.",
                 "You can check its status under Orders > Returns."],
    },
    "price_match": {
        "ask": ["Do you price match? I saw the {p} cheaper elsewhere.",
                "Another shop has the {p} for less. Can you match it?",
                "Can you match a lower price I found for the {p}?",
                "Will you beat a competitor's price on the {p}?"],
        "body": ["We match the price of major UK and US retailers on identical in-stock items, "
                 "including the {p}.",
                 "Yes, we price match identical items from major retailers, and within 14 days of "
                 "purchase we refund a drop in our own price.",
                 "We're happy to match a lower price on the {p} from a major retailer."],
        "next": ["Send us the link to the offer and your order number, and we'll apply it.",
                 "Reply with the competitor's link and we'll confirm within a day.",
                 "Share the listing with us here and we'll refund the difference."],
    },
    "pickup": {
        "ask": ["Can I collect my {p} in store instead of delivery?",
                "Is store pickup available for order {order}?",
                "I'd like to pick up the {p} today. Is that possible?",
                "Can I switch order {order} to collect the {p} in a store?"],
        "body": ["Store pickup is free, and most orders are ready within two hours.",
                 "Yes, you can collect your {p} from any Voltline store once you get the "
                 "ready-for-pickup email.",
                 "Pickup works for your {p}: bring the order email and a photo ID."],
        "next": ["Choose Pickup at checkout, or reply with order {order} and we'll switch it.",
                 "Someone else can collect it with the order email and their own ID.",
                 "We'll hold it for seven days after it's ready."],
    },
    "billing": {
        "ask": ["I was charged twice for my {p}. Order {order}.",
                "Why is there an extra charge on my card for the {p}?",
                "There are two charges on my statement for order {order}.",
                "My card shows a charge for the {p} plus a second one. Why?"],
        "body": ["I can see order {order}; a second charge is usually a temporary card hold that "
                 "drops off within three days.",
                 "Thanks for flagging this. We only take payment when your {p} ships, so any "
                 "extra line is a pending hold.",
                 "I've checked order {order}: one payment went through and the other line is "
                 "an authorisation hold your bank will release."],
        "next": ["If it's still there after three days, reply here and we'll refund it right away.",
                 "Send a screenshot of the statement and we'll check it with our payments team.",
                 "If anything looks wrong, reply and we'll correct it the same day."],
    },
}
GREETINGS = ["Thanks for reaching out, {name}!", "Hi {name}, thanks for getting in touch.",
             "Thanks for your message, {name}.", "Hi {name}, thank you for contacting Voltline.",
             "Hello {name}, and thanks for asking."]
SIGNOFFS = ["Have a great day!\nThe Voltline Team", "We're here if you need anything else.\n"
            "The Voltline Team", "Happy to help any time.\nThe Voltline Team",
            "Thanks for choosing Voltline.\nThe Voltline Team"]
FOLLOWUPS = {
    "ask": ["Thanks. And if I'm not home when it arrives?",
            "OK, and can I do that from the app too?",
            "Great. How long does that usually take?",
            "Thanks! Do I need the original box?",
            "One more thing: will I get an email confirmation?"],
    "body": ["Good question, {name}. The courier leaves a card and tries again the next day, or "
             "you can redirect it to a Voltline store.",
             "Yes, {name}, everything works the same way in the Voltline app under Orders.",
             "Usually two to three business days, {name}, and we'll email you at each step.",
             "No need, {name}; any sturdy box works and the label covers the postage.",
             "Yes, {name}, we email a confirmation as soon as it's done."],
}
SIGNATURE = "Customer: {name}"


def _fill(t: str, **kw: str) -> str:
    return t.format(**kw)


def support_thread(rng: random.Random) -> tuple[str, list[dict], str]:
    """(topic, [user, assistant, (user, assistant)], first user message)."""
    topic = rng.choice(list(SUPPORT))
    spec = SUPPORT[topic]
    product = rng.choice(PRODUCTS)[0]
    kw = {"p": product, "order": order_no(rng), "days": str(rng.randint(2, 12)),
          "months": str(rng.randint(3, 20)), "name": rng.choice(NAMES)}
    ask = _fill(rng.choice(spec["ask"]), **kw)
    if rng.random() < 0.5:
        ask = f"{ask} {rng.choice(['Thanks!', 'Thanks, ' + kw['name'], 'Cheers', kw['name']])}"
    reply = " ".join([
        _fill(rng.choice(GREETINGS), **kw),
        _fill(rng.choice(spec["body"]), **kw),
        _fill(rng.choice(spec["next"]), **kw),
    ]) + "\n\n" + rng.choice(SIGNOFFS)
    turns = [{"role": "user", "content": ask}, {"role": "assistant", "content": reply}]
    if rng.random() < 0.25:
        k = rng.randrange(len(FOLLOWUPS["ask"]))
        turns += [{"role": "user", "content": FOLLOWUPS["ask"][k]},
                  {"role": "assistant", "content": _fill(FOLLOWUPS["body"][k], **kw)
                   + "\n\nThe Voltline Team"}]
    return topic, turns, ask


def support_rows(rng: random.Random, n: int) -> list[dict]:
    system = read_prompt("support")
    return [{"messages": [{"role": "system", "content": system}, *support_thread(rng)[1]]}
            for _ in range(n)]


OFF_BRAND = [
    "Read the website, it's all there.",
    "Not our problem, talk to the courier.",
    "you should of checked before buying lol",
    "We will refund you double and send a free {p}, no questions asked!!!",
    "PLEASE WAIT. WE ARE BUSY. DO NOT EMAIL AGAIN.",
    "That's user error. The {p} works fine if you use it properly.",
    "idk, try turning it off and on?? sometimes the {p} just does that",
    "Policy says no. Nothing I can do.",
    "Ugh, another {p} complaint. Fill in the form.",
    "Sure, we'll give you a lifetime warranty on the {p}, just for you.",
    "Your fault for ordering the {p} during a sale. Wait like everyone else.",
    "Contact the manufacturer. We just sell the {p}.",
]
OFF_TAILS = ["", " Bye.", " Whatever.", " k thx", " Next time read the FAQ.",
             " Don't reply to this."]


def preference_rows(rng: random.Random, n: int) -> list[dict]:
    system = read_prompt("support")
    rows = []
    for _ in range(n):
        _topic, turns, _ask = support_thread(rng)
        turns = turns[:2]  # one turn: prompt = system + user
        product = rng.choice(PRODUCTS)[0]
        for p, _kind in PRODUCTS:
            if p in turns[0]["content"]:
                product = p
        rejected = rng.choice(OFF_BRAND).format(p=product) + rng.choice(OFF_TAILS)
        rows.append({
            "prompt": [{"role": "system", "content": system}, turns[0]],
            "chosen": {"role": "assistant", "content": turns[1]["content"]},
            "rejected": {"role": "assistant", "content": rejected},
        })
    return rows


# --------------------------------------------------------------------------------------------
# clauses
# --------------------------------------------------------------------------------------------
NUM_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 12: "twelve",
             18: "eighteen", 24: "twenty-four", 30: "thirty", 36: "thirty-six", 45: "forty-five",
             48: "forty-eight", 60: "sixty", 90: "ninety", 120: "one hundred and twenty",
             180: "one hundred and eighty"}
LAWS = ["England and Wales", "the State of New York", "the State of Delaware",
        "the State of California", "Ontario", "Germany", "Ireland", "Scotland",
        "the State of Texas", "the Netherlands", "British Columbia", "France"]
COMPANIES = ["Voltline Retail Ltd", "Brightwater Logistics", "Kestrel Analytics",
             "Northgate Components", "Harbor Cloud Services", "Meridian Print Co",
             "Silverline Security", "Arcadia Software", "Bluepeak Energy", "Copperfield Media",
             "Ironbridge Facilities", "Lakeshore Payments", "Oakridge Staffing",
             "Quarry Hill Devices", "Redwood Telecom", "Summit Freight"]
SUBJECTS = ["supply of consumer electronics", "warehouse logistics services",
            "cloud hosting services", "marketing analytics services", "device repair services",
            "payment processing services", "security monitoring services",
            "store fit-out and maintenance", "software licensing", "call-centre staffing"]
FILLER = [
    "Each party shall keep the other's Confidential Information secret and use it only to "
    "perform this Agreement.",
    "The Customer shall pay each undisputed invoice within thirty days of receipt.",
    "Neither party is liable for delay caused by events beyond its reasonable control, "
    "including fire, flood, strikes or failure of public networks.",
    "The Supplier shall maintain insurance with a reputable insurer throughout the Term.",
    "Neither party may assign this Agreement without the other's prior written consent, not "
    "to be unreasonably withheld.",
    "All notices shall be in writing and delivered by hand, courier or email to the addresses "
    "set out above.",
    "The Supplier shall comply with all applicable laws, including data protection laws.",
    "This Agreement is the entire agreement between the parties and supersedes all prior "
    "discussions.",
    "Intellectual property created by the Supplier in performing the Services vests in the "
    "Supplier, and the Customer receives a non-exclusive licence to use it.",
    "Each party shall appoint a contract manager to meet monthly and review performance.",
    "Service levels are set out in Schedule 2; service credits are the Customer's sole remedy "
    "for a failure to meet them.",
    "No failure to exercise a right under this Agreement is a waiver of it.",
]
CURRENCY_FMT = {"USD": "US${:,}", "EUR": "EUR {:,}", "GBP": "£{:,}", "CAD": "CAD {:,}"}


def _num(n: int, rng: random.Random) -> str:
    words = NUM_WORDS.get(n)
    return f"{words} ({n})" if words and rng.random() < 0.6 else str(n)


def clause_row(rng: random.Random) -> dict:
    a, b = rng.sample(COMPANIES, 2)
    law = rng.choice(LAWS) if rng.random() < 0.9 else None
    term = None
    term_text = ""
    r = rng.random()
    if r < 0.45:
        term = rng.choice([6, 12, 18, 24, 30, 36, 48, 60])
        term_text = rng.choice([
            "This Agreement commences on the Effective Date and continues for an initial term "
            "of {n} months (the \"Initial Term\").",
            "The initial term of this Agreement is {n} months from the Effective Date.",
            "This Agreement shall remain in force for a period of {n} months from the "
            "Effective Date.",
        ]).format(n=_num(term, rng))
    elif r < 0.85:
        years = rng.choice([1, 2, 3, 4, 5])
        term = years * 12
        unit = "year" if years == 1 else "years"
        term_text = rng.choice([
            "This Agreement commences on the Effective Date and continues for {n} {u}.",
            "The initial term of this Agreement is {n} {u} from the Effective Date.",
            "This Agreement shall remain in force for a period of {n} {u}.",
        ]).format(n=_num(years, rng), u=unit)
    else:
        term_text = "This Agreement continues until terminated in accordance with its terms."
    notice = rng.choice([30, 45, 60, 90, 120, 180]) if rng.random() < 0.85 else None
    renew = rng.random() < 0.5
    if renew:
        renew_text = rng.choice([
            "At the end of the Initial Term this Agreement renews automatically for successive "
            "periods of twelve (12) months",
            "This Agreement shall automatically renew for further one-year periods",
            "The term renews automatically for successive renewal periods of the same length",
        ])
        renew_text += (f" unless either party gives at least {_num(notice, rng)} days' written "
                       "notice of non-renewal." if notice else ".")
    else:
        renew_text = rng.choice([
            "This Agreement does not renew automatically; any extension must be agreed in "
            "writing.",
            "There is no automatic renewal of this Agreement.",
            "On expiry this Agreement ends unless the parties sign a written extension.",
        ])
        if notice:
            renew_text += (f" Either party may terminate this Agreement for convenience on "
                           f"{_num(notice, rng)} days' written notice.")
    cap = None
    if rng.random() < 0.75:
        currency = rng.choice(list(CURRENCY_FMT))
        amount = rng.choice([50_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, 2_000_000,
                             5_000_000])
        cap = {"amount": amount, "currency": currency}
        cap_text = rng.choice([
            "Each party's total aggregate liability under this Agreement shall not exceed {c}.",
            "The Supplier's liability arising out of or in connection with this Agreement is "
            "limited to {c} in aggregate.",
            "Save for fraud or death or personal injury caused by negligence, neither party's "
            "aggregate liability shall exceed {c}.",
        ]).format(c=CURRENCY_FMT[currency].format(amount))
    else:
        cap_text = rng.choice([
            "Nothing in this Agreement limits either party's liability for fraud.",
            "Neither party shall be liable for indirect or consequential loss.",
        ])
    law_text = (rng.choice([
        "This Agreement is governed by the laws of {l}.",
        "This Agreement and any dispute arising from it shall be governed by and construed in "
        "accordance with the laws of {l}.",
        "The laws of {l} govern this Agreement, and its courts have exclusive jurisdiction.",
    ]).format(l=law) if law else "")
    clauses = [term_text, renew_text, cap_text, law_text] + rng.sample(FILLER, rng.randint(2, 4))
    clauses = [c for c in clauses if c]
    rng.shuffle(clauses)
    header = (f"SERVICES AGREEMENT between {a} (the \"Customer\") and {b} (the \"Supplier\") "
              f"for the {rng.choice(SUBJECTS)}.")
    body = "\n".join(f"{i}. {c}" for i, c in enumerate(clauses, 1))
    question = rng.choice(["Extract the key terms from this contract.",
                           "Extract the key terms as JSON.",
                           "Please extract the contract terms.",
                           "Return the key terms of this agreement."])
    answer = {"governing_law": law, "term_months": term, "notice_period_days": notice,
              "liability_cap": cap, "auto_renewal": renew}
    return {"messages": [
        {"role": "system", "content": read_prompt("clauses")},
        {"role": "user", "content": f"{question}\n\n{header}\n{body}"},
        {"role": "assistant", "content": json.dumps(answer)},
    ]}


def clauses_rows(rng: random.Random, n: int) -> list[dict]:
    return [clause_row(rng) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# dedupe, split, write
# --------------------------------------------------------------------------------------------
def chat_text(row: dict) -> str:
    from tunebook.data.formats import row_text

    return row_text(row)


def dedupe(rows: list[dict]) -> list[dict]:
    texts = [chat_text(r) for r in rows]
    seen: dict[str, int] = {}
    exact = set()
    for i, t in enumerate(texts):
        if seen.setdefault(neardup.exact_key(t), i) != i:
            exact.add(i)
    near = neardup.clusters(neardup.Index.build(texts), DEDUP_THRESHOLD, skip=exact)
    drop = exact | set(near.duplicates())
    return [r for i, r in enumerate(rows) if i not in drop]


def write(task: str, rows: list[dict], label_of: Callable[[dict], str] | None = None) -> None:
    parts = split.split_rows(rows, chat_text, label_of, seed=SEED, threshold=DEDUP_THRESHOLD)
    folder = OUT / task
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for row in part:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{task}: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))


def balanced(rows: list[dict], per_label: int) -> list[dict]:
    out, count = [], {}
    for r in rows:
        label = r["messages"][-1]["content"]
        if count.get(label, 0) < per_label:
            count[label] = count.get(label, 0) + 1
            out.append(r)
    return out


def main(argv: list[str]) -> int:
    tasks = argv or ["triage", "support", "clauses", "support-pref"]
    for task in tasks:
        rng = random.Random(f"{SEED}-{task}")
        if task == "triage":
            rows = balanced(dedupe(triage_rows(rng, 260)), 170)
            write(task, rows, lambda r: r["messages"][-1]["content"])
        elif task == "support":
            write(task, dedupe(support_rows(rng, 900))[:720])
        elif task == "clauses":
            write(task, dedupe(clauses_rows(rng, 700))[:660])
        elif task == "support-pref":
            rows = dedupe(preference_rows(rng, 700))
            # Keep preference prompts away from the support task's held-out rows: the DPO
            # recipes are scored on the support suite, so a shared prompt would be a leak.
            held = []
            for split_name in ("val", "test"):
                path = OUT / "support" / f"{split_name}.jsonl"
                held += [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
            prompts = neardup.Index.build([chat_text(r) for r in rows])
            held_ix = neardup.Index.build([r["messages"][1]["content"] for r in held])
            pref_user = neardup.Index.build([r["prompt"][-1]["content"] for r in rows])
            del prompts
            leaks = {i for i, _j, _s in neardup.cross_matches(pref_user, held_ix, 0.7)}
            rows = [r for i, r in enumerate(rows) if i not in leaks][:420]
            write(task, rows)
        else:
            print(f"unknown task {task!r}; expected triage, support, clauses or support-pref")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
