"""`raid split` and `raid info` command modules: options parsed, results on stdout (JSON
alone with --json), and nothing heavy imported to build their parsers."""

import argparse
import json
import subprocess
import sys

import numpy as np

from raid.cli.commands import info, split
from raid.store.store import FeatureStore, StoreWriter


def parse(module, argv):
    p = argparse.ArgumentParser(prog=f"raid {module.NAME}")
    module.add_arguments(p)
    return p.parse_args(argv)


def make_store(path, n=10):
    keys = [f"0_real/{i}.npy" for i in range(n)] + [f"1_fake/{i}.npy" for i in range(n)]
    feats = np.random.default_rng(0).normal(size=(2 * n, 4)).astype(np.float32)
    with StoreWriter(path, 4, {"extractor": "imported-npy"}) as w:
        w.append(keys, feats, [0] * n + [1] * n, ["train"] * (2 * n))
    return path


def test_split_defaults_and_outputs(tmp_path, capsys):
    store = make_store(tmp_path / "s.h5")
    args = parse(split, [str(store)])
    assert (args.test, args.by, args.seed, args.out_train, args.out_test, args.overwrite) == \
        (0.2, "pair", 0, None, None, False)
    assert split.run(args) == 0
    out = capsys.readouterr().out
    assert "train 16 rows, 8 photos" in out and "test  4 rows, 2 photos" in out
    args = parse(split, [str(store), "--test", "0.5", "--by", "key", "--seed", "3",
                         "--out-train", str(tmp_path / "a.h5"), "--out-test",
                         str(tmp_path / "b.h5")])
    assert split.run(args) == 0
    with FeatureStore(tmp_path / "a.h5") as a, FeatureStore(tmp_path / "b.h5") as b:
        assert len(a) == len(b) == 10


def test_info_text_and_json(tmp_path, capsys):
    store = make_store(tmp_path / "s.h5")
    assert info.run(parse(info, [str(store)])) == 0
    assert "RAID feature store" in capsys.readouterr().out
    assert info.run(parse(info, [str(store), "--json"])) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout holds the JSON document and nothing else
    assert doc["groups"] == {"train": {"real": 10, "generated": 10}}


def test_parsers_import_nothing_heavy():
    code = ("import argparse, sys\n"
            "from raid.cli.commands import info, split\n"
            "for m in (info, split):\n"
            "    m.add_arguments(argparse.ArgumentParser())\n"
            "heavy = [m for m in ('torch', 'lightning', 'h5py', 'sklearn', 'numpy')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
