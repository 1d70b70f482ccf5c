"""Practitioners' data files, generated in the test (never shipped): one per task kind.

Seeded and deterministic. The e-mails are the acceptance dataset of `make new-task`: a CSV
``text,label`` of messages to four departments, with a few near-duplicates, as a team would
export it from a helpdesk.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

DEPARTMENTS = {
    "billing": ["I was charged twice for invoice {n} this month.",
                "Could you send me a corrected invoice for order {n}?",
                "My card was declined when paying the {month} bill.",
                "Why did my subscription price go up to {price} dollars?",
                "Please refund the duplicate payment of {price} dollars.",
                "The VAT number on invoice {n} is wrong.",
                "How do I change the billing address on my account?",
                "I need a receipt for the payment made on {day} {month}.",
                "Can I switch from monthly to yearly billing?",
                "There is a late fee on my statement I do not understand."],
    "technical": ["The app crashes every time I open the settings page.",
                  "I cannot log in since the update to version {v}.",
                  "Error code {n} appears when I sync my files.",
                  "The export to CSV produces an empty file.",
                  "Password reset emails never arrive in my inbox.",
                  "The dashboard has been loading for minutes since {day} {month}.",
                  "Two-factor codes are rejected as invalid.",
                  "The API returns a 500 error for the orders endpoint.",
                  "Notifications stopped working on my phone.",
                  "The printer integration disconnects after a few minutes."],
    "sales": ["We would like a quote for {n} licences for our team.",
              "Do you offer a discount for non-profit organisations?",
              "Can we book a demo of the enterprise plan on {day} {month}?",
              "What is included in the premium tier compared to basic?",
              "We are a school and need pricing for {n} seats.",
              "Is there a free trial for the analytics add-on?",
              "I would like to talk to someone about a volume agreement.",
              "Could you send the product brochure and price list?",
              "We are evaluating vendors and need a proposal by {month}.",
              "Does the business plan include priority onboarding?"],
    "hr": ["I would like to apply for the open position in {city}.",
           "When will I receive my contract for the new role?",
           "How many vacation days do I have left this year?",
           "I need a certificate of employment for my bank.",
           "Can I change my working hours from {month} onwards?",
           "Who do I contact about parental leave?",
           "My payslip for {month} is missing the overtime hours.",
           "I want to update my emergency contact details.",
           "Is remote work possible for the team in {city}?",
           "I am resigning and would like to know my notice period."],
}
OPENERS = ["Hello,", "Hi team,", "Good morning,", "Dear support,", "Hey,",
           "To whom it may concern,"]
CLOSERS = ["Thanks, {name}", "Best regards, {name}", "Kind regards, {name}", "Cheers, {name}",
           "Thank you in advance. {name}", "{name}"]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Farah", "Goran", "Hana", "Ivo", "Jade", "Kofi",
         "Lena", "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
CITIES = ["Lisbon", "Leeds", "Lyon", "Leipzig", "Lagos", "Lima", "Lille", "Luxembourg"]


def email(rng: random.Random, department: str) -> str:
    pool = DEPARTMENTS[department]
    body = " ".join(s.format(n=rng.randint(1000, 99999), price=rng.randint(9, 499),
                             month=rng.choice(MONTHS), day=rng.randint(1, 28),
                             v=f"{rng.randint(1, 9)}.{rng.randint(0, 20)}",
                             city=rng.choice(CITIES))
                    for s in rng.sample(pool, rng.randint(2, 3)))
    return (f"{rng.choice(OPENERS)} {body} "
            f"{rng.choice(CLOSERS).format(name=rng.choice(NAMES))}")


def emails_csv(path: Path, n: int = 900, near_duplicates: int = 6, seed: int = 0) -> Path:
    """``text,label`` e-mails to four departments, ``near_duplicates`` of them near-copies."""
    rng = random.Random(seed)
    rows = []
    for i in range(n - near_duplicates):
        label = list(DEPARTMENTS)[i % len(DEPARTMENTS)]
        rows.append((email(rng, label), label))
    for k in range(near_duplicates):  # a resent e-mail with a changed greeting
        text, label = rows[k * 7]
        rows.append((text.replace(text.split(" ", 1)[0], "Hi again,", 1) + " (resent)", label))
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def extraction_jsonl(path: Path, n: int = 160, seed: int = 1) -> Path:
    """Orders described in a sentence; the reply is the order as one JSON object."""
    rng = random.Random(seed)
    products = ["desk lamp", "office chair", "monitor arm", "keyboard", "webcam", "headset",
                "standing desk", "bookshelf", "printer", "router"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            qty, product = rng.randint(1, 40), rng.choice(products)
            city, express = rng.choice(CITIES), rng.random() < 0.4
            note = rng.choice(["", " Please gift-wrap it.", " Deliver after 5 pm.",
                               f" Reference PO-{rng.randint(100, 999)}."])
            text = (f"Order #{1000 + i}: {qty} x {product} to our office in {city}"
                    f"{', express shipping' if express else ''}.{note}")
            answer = {"quantity": qty, "product": product, "city": city, "express": express}
            f.write(json.dumps({"messages": [{"role": "user", "content": text},
                                             {"role": "assistant",
                                              "content": json.dumps(answer)}]}) + "\n")
    return path


def generation_alpaca(path: Path, n: int = 150, seed: int = 2) -> Path:
    """Alpaca rows: rewrite a terse product note as a friendly customer reply."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        rows = []
        for i in range(n):
            item, days = rng.choice(["parcel", "refund", "replacement", "invoice"]), \
                rng.randint(1, 14)
            name = rng.choice(NAMES)
            rows.append({"instruction": "Rewrite the note as a friendly reply to the customer.",
                         "input": f"note {i}: {item} for {name} delayed, new ETA {days} days, "
                                  f"ticket {rng.randint(10000, 99999)}",
                         "output": f"Hi {name}, thank you for your patience. Your {item} is on "
                                   f"its way and should reach you within {days} days. We are "
                                   f"sorry for the wait and will keep you posted. "
                                   f"Ref {rng.randint(100, 999)}-{i}."})
        json.dump(rows, f)
    return path


def preference_jsonl(path: Path, n: int = 140, seed: int = 3) -> Path:
    """Preference pairs: a polite, specific reply chosen over a curt one."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            question = email(rng, rng.choice(list(DEPARTMENTS)))
            name = rng.choice(NAMES)
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": question}],
                "chosen": {"role": "assistant", "content":
                           f"Hello {rng.choice(NAMES)}, thank you for writing. "
                           + " ".join(rng.sample(REPLY_SENTENCES, 2))
                           + f" Case {rng.randint(1000, 9999)}-{i}. {name}"},
                "rejected": {"role": "assistant", "content":
                             rng.choice(["Not our problem.", "Try again later.", "No.",
                                         "Read the FAQ.", "We cannot help."]) + f" ({i})"},
            }) + "\n")
    return path


REPLY_SENTENCES = [
    "I have looked into your account and can see what happened.",
    "I am sorry for the trouble this has caused you.",
    "I have forwarded this to the right team with a high priority.",
    "You will receive an update from us within one working day.",
    "Here is what you can try in the meantime: sign out and back in.",
    "I have issued a correction and you will see it on your next statement.",
    "Our specialist will call you at the number on file.",
    "I have attached the document you asked for to this reply.",
]


def sharegpt_mostly_near_duplicates(path: Path, n: int = 120, distinct: int = 30,
                                    seed: int = 4) -> Path:
    """Multi-turn ShareGPT threads, most of them near-copies of ``distinct`` originals."""
    rng = random.Random(seed)
    originals = []
    for _ in range(distinct):
        department = rng.choice(list(DEPARTMENTS))
        originals.append([
            {"from": "human", "value": email(rng, department)},
            {"from": "gpt", "value": " ".join(rng.sample(REPLY_SENTENCES, 2))},
            {"from": "human", "value": email(rng, department)},
            {"from": "gpt", "value": " ".join(rng.sample(REPLY_SENTENCES, 3))},
        ])
    with path.open("w", encoding="utf-8") as f:
        for k in range(n):
            conv = [dict(t) for t in originals[k % distinct]]
            if k >= distinct:  # a near-copy: the first turn's greeting changed
                conv[0]["value"] = "Hi there, " + conv[0]["value"].split(" ", 1)[1]
            f.write(json.dumps({"conversations": conv}) + "\n")
    return path
