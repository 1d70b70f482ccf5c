"""Write eval-suites/general-guard/general-guard.jsonl: general knowledge and arithmetic as
four-way multiple choice, the forgetting guard of every task.

Size: a guard is a non-inferiority test; with n items and a paired spread s of the per-item
differences, its bound sits about t * s / sqrt(n) below the point estimate. For a base that
knows most answers and a tuned model that changes 10% of them (s ~ 0.32), 500 items put the
bound ~0.023 below the estimate, so a model that truly does not regress passes the 0.05 margin
with ~97% probability; 120 items gave ~53%. The first 120 items are the suite's original ones;
the rest are generated here, seeded, so the file is reproducible:

    python scripts/generate_guard.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "eval-suites" / "general-guard" / "general-guard.jsonl"
ORIGINAL = 120  # gk-001..040 and ar-001..080, kept as they were
KNOWLEDGE_TOTAL, ARITHMETIC_TOTAL = 100, 400
SEED = 20261202

# question, right answer, three wrong answers
KNOWLEDGE = [
    ("What is the capital of Italy?", "Rome", "Milan", "Naples", "Turin"),
    ("What is the capital of Canada?", "Ottawa", "Toronto", "Vancouver", "Montreal"),
    ("What is the capital of Australia?", "Canberra", "Sydney", "Melbourne", "Perth"),
    ("What is the capital of Spain?", "Madrid", "Barcelona", "Seville", "Valencia"),
    ("What is the capital of Germany?", "Berlin", "Munich", "Hamburg", "Frankfurt"),
    ("What is the capital of Egypt?", "Cairo", "Alexandria", "Luxor", "Giza"),
    ("What is the capital of Kenya?", "Nairobi", "Mombasa", "Kisumu", "Nakuru"),
    ("What is the capital of Argentina?", "Buenos Aires", "Cordoba", "Rosario", "Mendoza"),
    ("What is the capital of South Korea?", "Seoul", "Busan", "Incheon", "Daegu"),
    ("What is the capital of Norway?", "Oslo", "Bergen", "Stockholm", "Trondheim"),
    ("How many planets are in the Solar System?", "8", "7", "9", "10"),
    ("What is the chemical formula of water?", "H2O", "CO2", "O2", "NaCl"),
    ("What is the chemical symbol for iron?", "Fe", "Ir", "In", "Fr"),
    ("What is the chemical symbol for sodium?", "Na", "So", "Sd", "Sn"),
    ("Which gas makes up most of Earth's atmosphere?", "Nitrogen", "Oxygen", "Carbon dioxide",
     "Argon"),
    ("What is the hardest natural substance?", "Diamond", "Gold", "Iron", "Granite"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus", "Jupiter", "Saturn"),
    ("How many degrees are in a right angle?", "90", "45", "180", "60"),
    ("How many degrees are in a full circle?", "360", "180", "90", "400"),
    ("How many sides does a pentagon have?", "Five", "Four", "Six", "Seven"),
    ("How many sides does an octagon have?", "Eight", "Six", "Seven", "Ten"),
    ("How many days are in a week?", "Seven", "Five", "Six", "Eight"),
    ("How many months are in a year?", "Twelve", "Ten", "Eleven", "Thirteen"),
    ("How many seconds are in a minute?", "60", "100", "30", "120"),
    ("How many centimetres are in a metre?", "100", "10", "1000", "12"),
    ("How many grams are in a kilogram?", "1000", "100", "10", "10000"),
    ("How many millilitres are in a litre?", "1000", "100", "10", "500"),
    ("What is the largest hot desert in the world?", "Sahara", "Gobi", "Kalahari", "Atacama"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", "Michelangelo", "Raphael",
     "Vincent van Gogh"),
    ("Who developed the theory of relativity?", "Albert Einstein", "Isaac Newton", "Niels Bohr",
     "Galileo Galilei"),
    ("Which organs do humans breathe with?", "Lungs", "Liver", "Kidneys", "Stomach"),
    ("What is the largest organ of the human body?", "Skin", "Liver", "Heart", "Brain"),
    ("How many bones are in the adult human body?", "206", "106", "306", "186"),
    ("Which blood cells carry oxygen?", "Red blood cells", "White blood cells", "Platelets",
     "Plasma"),
    ("What is the main source of energy for life on Earth?", "The Sun", "The Moon",
     "Volcanoes", "Wind"),
    ("In the northern hemisphere, which season comes after summer?", "Autumn", "Spring",
     "Winter", "Monsoon"),
    ("What is the opposite of 'up'?", "Down", "Left", "Over", "High"),
    ("What is the plural of 'child'?", "Children", "Childs", "Childes", "Childrens"),
    ("Which word is a verb?", "Run", "Blue", "Table", "Quickly"),
    ("Which number is prime?", "7", "9", "15", "21"),
    ("Which number is even?", "14", "9", "21", "33"),
    ("What is 5 squared?", "25", "10", "20", "30"),
    ("What is the square root of 144?", "12", "14", "11", "16"),
    ("What is the smallest prime number?", "2", "1", "3", "0"),
    ("About how fast does light travel?", "300,000 km per second", "3,000 km per second",
     "30,000 km per second", "3,000,000 km per second"),
    ("On which continent is Kenya?", "Africa", "Asia", "South America", "Europe"),
    ("On which continent is Peru?", "South America", "Africa", "Asia", "Europe"),
    ("Which ocean lies between Europe and North America?", "Atlantic", "Pacific", "Indian",
     "Arctic"),
    ("What is the currency of Japan?", "Yen", "Won", "Yuan", "Ringgit"),
    ("What is the currency of the United Kingdom?", "Pound sterling", "Euro", "Dollar",
     "Franc"),
    ("What does RAM stand for?", "Random Access Memory", "Read Access Memory",
     "Rapid Action Memory", "Random Array Module"),
    ("What does URL stand for?", "Uniform Resource Locator", "Universal Routing Link",
     "Uniform Remote Link", "Unified Resource Line"),
    ("Which unit measures electric current?", "Ampere", "Volt", "Watt", "Ohm"),
    ("Which unit measures power?", "Watt", "Joule", "Newton", "Pascal"),
    ("Which unit measures force?", "Newton", "Watt", "Joule", "Kelvin"),
    ("Which gas do humans breathe out that plants take in?", "Carbon dioxide", "Oxygen",
     "Nitrogen", "Helium"),
    ("What is the freezing point of water in Celsius?", "0", "32", "100", "-10"),
    ("Which of these animals lays eggs?", "Chicken", "Cow", "Dog", "Horse"),
    ("Which instrument usually has 88 keys?", "Piano", "Guitar", "Violin", "Flute"),
    ("Which planet has the most prominent rings?", "Saturn", "Mars", "Mercury", "Venus"),
]


def choices(rng: random.Random, right: str, wrong: list[str]) -> tuple[list[str], int]:
    options = [right, *wrong]
    rng.shuffle(options)
    return options, options.index(right)


def arithmetic(rng: random.Random, seen: set[str]) -> tuple[str, str, list[str]]:
    while True:
        op = rng.choice(["+", "-", "x", "/"])
        if op == "+":
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            answer = a + b
        elif op == "-":
            a, b = rng.randint(20, 99), rng.randint(2, 19)
            answer = a - b
        elif op == "x":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            answer = a * b
        else:
            b, answer = rng.randint(2, 12), rng.randint(2, 12)
            a = b * answer
        question = f"What is {a} {op} {b}?"
        if question in seen:
            continue
        seen.add(question)
        offsets = rng.sample([d for d in (-10, -3, -2, -1, 1, 2, 3, 10) if answer + d > 0], 3)
        return question, str(answer), [str(answer + d) for d in offsets]


def main() -> int:
    rows = [json.loads(x) for x in OUT.read_text(encoding="utf-8").splitlines()][:ORIGINAL]
    seen = {r["question"] for r in rows}
    rng = random.Random(SEED)
    knowledge = sum(r["kind"] == "knowledge" for r in rows)
    arith = sum(r["kind"] == "arithmetic" for r in rows)
    for question, right, *wrong in KNOWLEDGE[: KNOWLEDGE_TOTAL - knowledge]:
        assert question not in seen, question
        seen.add(question)
        options, label = choices(rng, right, wrong)
        knowledge += 1
        rows.append({"id": f"gk-{knowledge:03d}", "kind": "knowledge", "question": question,
                     "choices": options, "label": label})
    while arith < ARITHMETIC_TOTAL:
        question, right, wrong = arithmetic(rng, seen)
        options, label = choices(rng, right, wrong)
        arith += 1
        rows.append({"id": f"ar-{arith:03d}", "kind": "arithmetic", "question": question,
                     "choices": options, "label": label})
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {knowledge} knowledge + {arith} arithmetic items")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
