"""Writes the example's arithmetic word problems (train.jsonl, eval.jsonl); seeded, so the files are reproducible."""
import json
import random

NAMES = ["Tom", "Ana", "Li", "Sam", "Mia", "Raj"]
THINGS = ["apples", "books", "coins", "cards", "pens", "shells"]
ADD = ["{n} has {a} {t} and gets {b} more. How many {t} does {n} have?",
       "{n} had {a} {t}. A friend gave {n} {b} more. How many {t} now?"]
SUB = ["{n} has {a} {t} and gives away {b}. How many {t} are left?",
       "There were {a} {t}. {n} took {b}. How many {t} remain?"]


def problem(rng):
    n, t = rng.choice(NAMES), rng.choice(THINGS)
    if rng.random() < 0.5:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return {"prompt": rng.choice(ADD).format(n=n, t=t, a=a, b=b), "answer": str(a + b)}
    a = rng.randint(2, 18)
    b = rng.randint(1, a - 1)
    return {"prompt": rng.choice(SUB).format(n=n, t=t, a=a, b=b), "answer": str(a - b)}


rng = random.Random(17)
for name, count in [("train.jsonl", 2000), ("eval.jsonl", 200)]:
    with open(name, "w") as f:
        for _ in range(count):
            f.write(json.dumps(problem(rng)) + "\n")
