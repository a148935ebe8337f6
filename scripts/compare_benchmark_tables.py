"""How much two runs of one benchmark suite differ: the largest |difference| of any per-class
IoU or mIoU (IoU points) between two ``table.json`` files of ``ces benchmark``, per method, and
whether the fine-tuned parameters are bit-identical (the records' parameter digests).

    python scripts/compare_benchmark_tables.py results/run1/table.json results/run2/table.json
"""
import json
import sys


def cells(doc):
    for t in doc["tables"]:
        for row in t["rows"]:
            for target, cell in row["targets"].items():
                for name, v in cell["per_class_iou"].items():
                    yield (t["source"], row["model"], row["method"], target, name), v
                yield (t["source"], row["model"], row["method"], target, "mIoU"), cell["miou"]


def digests(doc):
    return {(t["source"], r["model"], r["method"]): (r["finetune"] or {}).get("param_digest")
            for t in doc["tables"] for r in t["rows"]}


def main(a_path: str, b_path: str) -> None:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    va, vb = dict(cells(a)), dict(cells(b))
    worst: dict = {}
    for key in va.keys() & vb.keys():
        if va[key] is None or vb[key] is None:
            continue
        d = abs(va[key] - vb[key]) * 100
        method = key[2]
        if d >= worst.get(method, (-1, None))[0]:
            worst[method] = (d, key)
    for method, (d, key) in sorted(worst.items()):
        print(f"{method}: max |difference| {d:.2f} IoU points ({' / '.join(key)})")
    print(f"all: max |difference| {max(d for d, _ in worst.values()):.2f} IoU points over "
          f"{len(va.keys() & vb.keys())} figures")
    da, db = digests(a), digests(b)
    for key in sorted(k for k in da if da[k]):
        print(f"{' / '.join(key)}: parameters {'identical' if da[key] == db.get(key) else 'differ'} "
              f"({da[key]} vs {db.get(key)})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
