"""The embedded default data set: small, synthetic, MS MARCO-formatted, shipped in data/embedded/.

    python -m search.embedded_data [--out data/embedded]   # rebuilds it (needs the bm25 extra)

Invented entities ("the Varnoth lily") each have six facts. A query asks for one fact; its
answer passage often says it without the query's key word (hue, not colour), a "spam" passage
repeats the question's words and answers nothing, and a partial passage circles the topic. BM25
ranks the spam first and cannot tell the answer from the entity's other passages; a reranker that learns what an answer looks like beats it. Judgments are graded:
answer 3, partial 1, spam 0, as in TREC DL. The first-stage run is real Pyserini BM25.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "embedded"
SEED = 20251130
N_ENTITIES = 110
QUERIES_PER_ENTITY = 2

KINDS = ["lily", "fern", "sparrow", "beetle", "lantern", "loom", "cheese", "violin", "orchid", "moth",
         "kettle", "pony", "cactus", "trout", "saddle", "harp"]
SYLLABLES = ["var", "noth", "kel", "brim", "ost", "ula", "zen", "dar", "mip", "tor", "qua", "lesh",
             "rin", "bex", "ord", "fal", "gim", "yst", "pol", "wen", "sar", "cru", "ith", "mon"]
COLORS = ["crimson", "amber", "teal", "violet", "ochre", "silver", "emerald", "scarlet", "ivory",
          "cobalt", "indigo", "saffron"]
PLACES = ["Norway", "Peru", "the Scottish Highlands", "Morocco", "northern Japan", "Chile", "Portugal",
          "Mongolia", "Kenya", "Iceland", "Tasmania", "the Andes", "Bavaria", "Nepal"]
PEOPLE = ["Maria Lindqvist", "Tomas Okafor", "Ellen Brandt", "Hiroshi Sato", "Ana Ferreira",
          "Samuel Whitcombe", "Ingrid Solberg", "Rafael Mendes", "Clara Dubois", "Piotr Nowak"]
JOBS = ["botanist", "traveller", "naturalist", "merchant", "schoolteacher", "monk", "surveyor"]
USES = ["dye wool a deep shade", "brew a bitter tea", "keep grain dry in winter", "mark the start of the harvest",
        "soothe sore throats", "light village festivals", "teach children to count", "trade for salt"]

# relation: (query templates, answer templates, partial templates, spam templates)
# Two of three answers avoid the query's key word, as paraphrases do; spam pages repeat it.
RELATIONS = {
    "color": (
        ["what color is the {e} {k}", "{e} {k} color"],
        ["The {E} {k} is {color} in hue, with darker patches near the base.",
         "Seen up close, a {E} {k} shows a {color} tint that fades in strong sunlight.",
         "The color of the {E} {k} is a soft {color}."],
        ["The {E} {k} changes its look with the seasons, and observers often disagree about it."],
        ["Color notes on the {e} {k}: readers ask about it often, and an answer will follow in a later edition."]),
    "origin": (
        ["where does the {e} {k} come from", "{e} {k} origin"],
        ["The {E} {k} is native to {place}, where it was known long before it spread abroad.",
         "Its first home was {place}; the {E} {k} reached other regions only through trade.",
         "The {E} {k} has its origin in {place}."],
        ["The {E} {k} has travelled widely, and several regions claim it as their own."],
        ["The origin of the {e} {k} is a question many readers ask; it is still argued about."]),
    "year": (
        ["when was the {e} {k} first recorded", "{e} {k} year first recorded"],
        ["The earliest written account of the {E} {k} dates to {year}.",
         "In {year} a parish ledger mentions the {E} {k} for the first time.",
         "The {E} {k} was first recorded in {year} by a travelling clerk."],
        ["Old archives mention the {E} {k} only vaguely, and historians debate the dates."],
        ["When the {e} {k} was first recorded is a matter for another page."]),
    "person": (
        ["who first described the {e} {k}", "{e} {k} first described by"],
        ["{person}, a {job}, wrote the earliest account of the {E} {k}.",
         "The {E} {k} owes its name to {person}, a {job} who sketched it in a notebook.",
         "The {E} {k} was first described by {person}, a {job}."],
        ["Several travellers claimed credit for noticing the {E} {k}, and the matter was never settled."],
        ["Who described the {e} {k} is a question for a future article."]),
    "size": (
        ["how big does the {e} {k} grow", "{e} {k} size"],
        ["A mature {E} {k} measures roughly {n} centimetres across.",
         "Fully grown, the {E} {k} reaches about {n} centimetres.",
         "The {E} {k} can grow to a size of {n} centimetres."],
        ["The {E} {k} varies a great deal from one specimen to the next."],
        ["The size of the {e} {k} is a popular question; our chart is not finished."]),
    "use": (
        ["what is the {e} {k} used for", "{e} {k} uses"],
        ["Farmers rely on the {E} {k} to {use}.",
         "People have long kept the {E} {k} to {use}.",
         "The {E} {k} is used to {use}."],
        ["The {E} {k} has had many roles over the centuries, some of them forgotten."],
        ["Uses of the {e} {k} are a frequent topic, covered in a later section."]),
}


def invent_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.sample(SYLLABLES, 2)))
    return sorted(names)


def build(rng: random.Random):
    """(collection, queries, qrels) as lists of records, deterministic for a seed."""
    collection, queries, qrels = [], [], []
    for name in invent_names(rng, N_ENTITIES):
        kind = rng.choice(KINDS)
        facts = dict(e=name, E=name.capitalize(), k=kind, color=rng.choice(COLORS), place=rng.choice(PLACES),
                     year=rng.randint(1650, 1990), person=rng.choice(PEOPLE), job=rng.choice(JOBS),
                     n=rng.randint(3, 90), use=rng.choice(USES))
        asked = rng.sample(sorted(RELATIONS), QUERIES_PER_ENTITY)
        passages = {}
        for relation, (_, answers, partials, spams) in RELATIONS.items():
            # every fact has an answer and a partial passage; only asked facts draw spam pages
            for grade, templates in ((3, answers), (1, partials), (0, spams)):
                if grade > 0 or relation in asked:
                    pid = str(1_000_000 + len(collection))
                    collection.append((pid, rng.choice(templates).format(**facts)))
                    passages[relation, grade] = pid
        for relation in asked:
            qid = str(100 + len(queries))
            queries.append((qid, rng.choice(RELATIONS[relation][0]).format(**facts)))
            qrels.extend((qid, passages[relation, grade], grade) for grade in (3, 1, 0))
    order = list(range(len(collection)))
    rng.shuffle(order)  # pids carry no hint of the grade
    renumber = {collection[i][0]: str(2_000_000 + new) for new, i in enumerate(order)}
    collection = sorted((renumber[pid], text) for pid, text in collection)
    qrels = [(qid, renumber[pid], grade) for qid, pid, grade in qrels]
    return collection, queries, qrels


def write(out: Path, with_run: bool = True) -> None:
    from search.bm25 import bm25_run
    out.mkdir(parents=True, exist_ok=True)
    collection, queries, qrels = build(random.Random(SEED))
    (out / "collection.tsv").write_text("".join(f"{pid}\t{text}\n" for pid, text in collection))
    (out / "queries.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, text in queries))
    (out / "qrels.txt").write_text("".join(f"{qid} 0 {pid} {grade}\n" for qid, pid, grade in qrels))
    if with_run:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            bm25_run(out / "collection.tsv", out / "queries.tsv", out / "run.bm25.trec",
                     index_dir=Path(tmp) / "index", k=100)
        (out / "run.bm25.trec.json").unlink(missing_ok=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search.embedded_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    write(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
