"""Tests of evaluate.py: retrieval metrics against brute force, activity recognition, reports and the CLI.

Expected values come from how each case is built (orthonormal vectors, angles in a plane, hand-counted
confusions), never from the function under test. Tie cases use unit vectors whose entries are 0, +-1 or
+-1/2, so every cosine is exact in float32 whatever order the products are summed in.
"""
import copy
import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

import data
import evaluate as ev
from model import CHECKPOINT_VERSION, IMUEncoder, IMUEncoderConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------
# Retrieval metrics
# --------------------------------------------------------------------------------------


def exact_units(rng, n, d=6):
    """n unit vectors in R^d with one entry +-1 or four entries +-1/2: all dot products are exact."""
    x = np.zeros((n, d), np.float32)
    for row in x:
        k = rng.choice([1, 4])
        row[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) / np.sqrt(k)
    return x


def brute_ranks(q, c, qg, cg):
    """Rank by definition, one query at a time: 1 + wrong candidates scoring >= the best right one."""
    ranks = []
    for i in range(len(q)):
        scores = [float(np.dot(q[i], c[j])) for j in range(len(c))]
        best = max(s for s, g in zip(scores, cg) if g == qg[i])
        ranks.append(1 + sum(1 for s, g in zip(scores, cg) if g != qg[i] and s >= best))
    return ranks


@pytest.mark.parametrize("seed", range(6))
def test_ranks_match_brute_force_with_ties_and_groups(seed):
    rng = np.random.default_rng(seed)
    Q, C = rng.integers(1, 30), rng.integers(2, 50)
    q, c = exact_units(rng, Q), exact_units(rng, C)  # 6-d with few patterns: many exact ties
    cg = rng.integers(0, 6, C)  # many-to-one ground truth
    qg = rng.choice(cg, Q)
    expected = brute_ranks(q, c, qg, cg)
    assert ev.retrieval_ranks(q, c, qg, cg).tolist() == expected
    assert ev.retrieval_ranks(q, c, qg, cg, chunk=1).tolist() == expected  # one query per chunk
    assert ev.retrieval_ranks(q, c, qg, cg, chunk=7).tolist() == expected


def test_chunked_equals_unchunked_on_random_embeddings():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 16, generator=g)
    b = a + 0.8 * torch.randn(300, 16, generator=g)
    whole = ev.retrieval_ranks(a, b)
    assert whole.shape == (300,) and 1 < whole.max() <= 300
    for chunk in (1, 13, 64):
        assert torch.equal(ev.retrieval_ranks(a, b, chunk=chunk), whole)


def test_identity_is_perfect():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    m = ev.rank_metrics(ev.retrieval_ranks(x, 3.0 * x))  # cosine: the scale does not matter
    assert m == {"R@1": 1.0, "R@10": 1.0, "R@50": 1.0, "MRR": 1.0, "median_rank": 1.0}


def test_ordered_angles_give_every_rank_once():
    # every query points along x; candidate j is at angle j * 1 degree, so candidate i ranks exactly i + 1
    N = 40
    angles = np.deg2rad(np.arange(N))
    c = np.stack([np.cos(angles), np.sin(angles)], 1)
    q = np.tile([1.0, 0.0], (N, 1))
    assert ev.retrieval_ranks(q, c).tolist() == list(range(1, N + 1))
    # reversed ground truth (query i's answer is candidate N-1-i): the same ranks, reversed
    rev = np.arange(N)[::-1].copy()
    assert ev.retrieval_ranks(q, c, rev, np.arange(N)).tolist() == list(range(N, 0, -1))
    m = ev.rank_metrics(torch.arange(1, N + 1))
    H = sum(1 / r for r in range(1, N + 1))
    assert m["R@1"] == pytest.approx(1 / N) and m["R@10"] == pytest.approx(10 / N) and m["R@50"] == 1.0
    assert m["MRR"] == pytest.approx(H / N) and m["median_rank"] == (N + 1) / 2
    assert ev.chance_metrics(1, N) == pytest.approx(m)  # a uniform spread of ranks is exactly chance


def test_shifted_orthonormal_pairs_lose_every_tie():
    # query i equals candidate i+1 (mod N): its own candidate scores 0, tied with N-2 other zeros, behind the 1
    N = 12
    c = np.eye(N, dtype=np.float32)
    q = np.roll(c, -1, axis=0)
    assert ev.retrieval_ranks(q, c).tolist() == [N] * N  # pessimistic: 1 ahead + N-2 ties ahead
    m = ev.rank_metrics(ev.retrieval_ranks(q, c))
    assert m["R@1"] == 0.0 and m["R@10"] == 0.0 and m["MRR"] == pytest.approx(1 / N) and m["median_rank"] == N


def test_collapsed_embeddings_get_the_worst_rank_and_identical_texts_count_as_right():
    same = np.ones((5, 3))
    assert ev.retrieval_ranks(same, same).tolist() == [5] * 5  # a collapsed encoder scores worst, not best
    # two windows share a narration: their text queries are identical, and either window is a right answer
    text = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    imu = np.array([[0.9, 0.1, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    groups = ev.group_ids(["c walks", "c walks", "c sits"])
    assert groups[0] == groups[1] != groups[2]
    assert ev.retrieval_ranks(text, imu, groups, groups).tolist() == [1, 1, 1]
    assert ev.retrieval_ranks(text, imu).tolist() == [2, 1, 1]  # one-to-one truth: query 0 loses to window 1


def test_group_ids_are_exact_row_or_text_matches():
    video = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0 + 1e-7]], np.float32)
    for key in (video, ["a", "b", "a", "c"]):  # rows equal bit for bit; a 1e-7 change is another frame
        g = ev.group_ids(key).tolist()
        assert g[0] == g[2] and len({g[0], g[1], g[3]}) == 3


def test_pools_of_each_protocol():
    # 12 recordings of 1 to 4 windows each, interleaved
    ids = np.random.default_rng(0).permutation(np.repeat([f"rec{r:02d}" for r in range(12)], 1 + np.arange(12) % 4))
    ids, official, drawn = ids.tolist(), ev.EvalConfig(protocol="official"), set()
    for seed in range(40):
        [pool] = [p.tolist() for p in ev.draw_pools(official, ids, torch.Generator().manual_seed(seed))]
        recs = [ids[i] for i in pool]
        assert len(set(pool)) == len(pool) and len(set(recs)) == 3  # 25% of the 12 recordings, no window twice
        assert all(recs.count(r) == min(2, ids.count(r)) for r in recs)  # at most 2 windows each
        assert ev.draw_pools(official, ids, torch.Generator().manual_seed(seed))[0].tolist() == pool  # seeded
        drawn |= set(recs)
    assert drawn == set(ids)  # any recording can be drawn
    few = ids[:3]  # fewer than 4 recordings: still one
    assert len({few[i] for i in ev.draw_pools(official, few, torch.Generator().manual_seed(0))[0]}) == 1
    pools = ev.draw_pools(ev.EvalConfig(pool_size=7), ids, torch.Generator().manual_seed(0))  # 30 windows
    used = torch.cat(pools).tolist()
    assert [len(p) for p in pools] == [7] * 4 and len(set(used)) == 28  # --pool-size K: N // K pools of K windows
    other = ev.draw_pools(ev.EvalConfig(pool_size=7), ids, torch.Generator().manual_seed(1))
    assert [p.tolist() for p in pools] != [p.tolist() for p in other]  # another draw, another shuffle
    assert [p.tolist() for p in ev.draw_pools(ev.EvalConfig(), ids, None)] == [list(range(len(ids)))]  # the split


class FakeTestSplit:
    """What task_retrieval reads of a WindowDataset: embeddings, narrations and recordings of N windows."""

    def __init__(self, recording_ids, texts, rng):
        self.recording_ids, self.texts = recording_ids, texts
        self.video_emb, self.text_emb = exact_units(rng, len(texts)), exact_units(rng, len(texts))

    def __len__(self):
        return len(self.texts)


def test_official_protocol_ranks_and_chance_in_each_pool_by_enumeration():
    # every draw's pool (at most 6 windows) is small enough to enumerate every ordering for its exact chance
    rng = np.random.default_rng(1)
    ids = np.repeat([f"rec{r:02d}" for r in range(12)], 1 + np.arange(12) % 4).tolist()
    test = FakeTestSplit(ids, [["c walks", "c sits", "c runs"][i % 3] for i in range(len(ids))], rng)
    imu = torch.as_tensor(exact_units(rng, len(ids)))  # exact cosines: ties, ranked pessimistically
    cfg = ev.EvalConfig(protocol="official", seeds=4, seed=3)
    r = ev.task_retrieval(cfg, test, imu)
    pools = [ev.draw_pools(cfg, ids, torch.Generator().manual_seed(s))[0] for s in range(3, 7)]
    assert (r["mode"], r["draws"], r["pool_size"]) == ("official", 4, np.mean([len(p) for p in pools]))
    frames = [str(row.tolist()) for row in test.video_emb]  # equal frame embeddings are one frame (few patterns)
    for name, key, query, cand in (("text->imu", test.texts, test.text_emb, imu), ("imu->video", frames, imu,
                                                                                  test.video_emb)):
        groups, chance, metrics = np.array(key), [], []
        for p in (p.tolist() for p in pools):
            g = groups[p]
            chance.append(chance_by_enumeration(len(p), [int((g == gi).sum()) for gi in g]))
            metrics.append(ev.rank_metrics(torch.tensor(brute_ranks(np.asarray(query)[p], np.asarray(cand)[p], g, g))))
        for k in ev.METRIC_NAMES:
            assert r["directions"][name]["chance"][k] == pytest.approx(np.mean([c[k] for c in chance]), abs=1e-9)
            assert r["directions"][name][k] == pytest.approx(np.mean([m[k] for m in metrics]), abs=1e-9)
            assert r["directions"][name][k + "_std"] == pytest.approx(np.std([m[k] for m in metrics], ddof=1), abs=1e-9)


def test_non_finite_embeddings_rank_worst():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20, 8, generator=g)
    nan = torch.full_like(x, float("nan"))
    assert ev.retrieval_ranks(nan, nan).tolist() == [20] * 20  # an all-NaN model: every query last
    assert ev.rank_metrics(ev.retrieval_ranks(nan, nan))["R@1"] == 0.0
    bad = x.clone()
    bad[3, 0] = float("inf")  # one broken window, as query and as candidate
    ranks = ev.retrieval_ranks(bad, bad)
    assert ranks[3] == 20 and (ranks[torch.arange(20) != 3] == 1).all()  # it never outranks a right candidate
    groups = torch.arange(20) // 2  # many-to-one: the NaN right candidate of query 6 ranks below the finite one
    bad[7] = float("nan")
    assert ev.retrieval_ranks(bad, bad, groups, groups)[6] == 1


def chance_by_enumeration(N, m_per_query):
    """Expected metrics over every ordering of N candidates (the first m right): brute force, tiny N."""
    import itertools

    ranks = [[1 + min(perm.index(j) for j in range(m)) for perm in itertools.permutations(range(N))]
             for m in m_per_query]  # first right position, per query and ordering
    all_ranks = np.array(ranks).T.reshape(-1)  # (N! * Q,) every query under every ordering
    return ev.rank_metrics(torch.as_tensor(all_ranks))


@pytest.mark.parametrize("N, m", [(6, [1]), (6, [2]), (7, [3, 1, 1]), (5, [5, 2])])
def test_chance_equals_every_ordering(N, m):
    # R@k and MRR are means, so averaging over every ordering is the expectation itself; the median over
    # all (query, ordering) pairs is the median of the mixture, as chance_metrics defines it
    assert ev.chance_metrics(np.array(m), N) == pytest.approx(chance_by_enumeration(N, m), abs=1e-9)


def test_chance_matches_monte_carlo_of_random_embeddings():
    # many-to-one like text->imu: 262 windows, ~170 narrations, up to 7 windows per narration
    rng = np.random.default_rng(0)
    groups = np.minimum(rng.geometric(0.6, 262) - 1, 6)
    groups = np.concatenate([np.full(n + 1, i) for i, n in enumerate(groups)])[:262]
    n_right = np.bincount(groups)[groups]  # each window's group size
    assert n_right.max() >= 4
    g = torch.Generator().manual_seed(0)
    ranks = torch.stack([ev.retrieval_ranks(torch.randn(262, 16, generator=g), torch.randn(262, 16, generator=g),
                                            groups, groups) for _ in range(150)])  # (150, 262)
    mc, exact = ev.rank_metrics(ranks), ev.chance_metrics(n_right, 262)
    for k in ("R@1", "R@10", "R@50", "MRR"):
        assert mc[k] == pytest.approx(exact[k], rel=0.06)
    assert abs(mc["median_rank"] - exact["median_rank"]) <= 3
    assert exact["R@1"] > 1.5 / 262  # well above the one-right-answer chance the tables used to print


# --------------------------------------------------------------------------------------
# Activity recognition
# --------------------------------------------------------------------------------------


def test_classification_metrics_hand_counted():
    m = ev.classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    # F1 per class: 0: P 1/2 R 1/2 -> 1/2; 1: P 2/3 R 1 -> 4/5; 2: 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_a_predicted_absent_class_as_torchmetrics_does():
    # torchmetrics' macro F1 (the official code's) averages over the classes with tp + fp + fn > 0: class 2 is
    # predicted once but absent from the labels, so it scores 0 and counts; class 3 appears nowhere and is left out
    m = ev.classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], 4)
    # F1 per class: 0: P 1 R 1/2 -> 2/3; 1: P 1 R 1 -> 1; 2: P 0 R 0 (tp + fp + fn = 1) -> 0; 3: not scored
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["accuracy"] == pytest.approx(3 / 4)


def test_zero_shot_on_hand_made_embeddings():
    class_emb = np.array([[1, 0, 0, 0], [0, 5, 0, 0], [0, 0, 0.1, 0]], np.float32)  # norms differ on purpose
    imu = np.array([[0.2, 0.9, 0, 0.3], [3, 0.5, 0.5, 0], [0, 0.1, 0.2, 0], [-1, -1, 0.01, 0]], np.float32)
    assert ev.zero_shot_predict(imu, class_emb).tolist() == [1, 0, 2, 2]


def test_stratified_split_keeps_every_class():
    labels = np.repeat([0, 1, 2], [10, 5, 1])
    fit, val = data.stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(16))
    assert [int((labels[val] == k).sum()) for k in range(3)] == [2, 1, 0]  # the single window is kept for fit
    few, _ = data.stratified_split(labels, 0.2, seed=0, keep_frac=0.25)
    assert [int((labels[few] == k).sum()) for k in range(3)] == [2, 1, 1]  # >= 1 per class
    assert set(few) <= set(data.stratified_split(labels, 0.2, seed=0, keep_frac=0.5)[0]) <= set(fit)  # nested
    assert not len(data.stratified_split(labels, 0.0, seed=0)[1])  # nothing held out


def tiny_encoder_config(embed_dim=16):
    return IMUEncoderConfig(embed_dim=embed_dim, gru_hidden=16, projection=True, channels=8, feature_groups=2, kernel_sizes=(5, 5),
                            pool_kernel=2)


def labelled_set(n, T, rate_hz, seed):
    """Three classes told apart by the frequency of the motion: 0.5, 2 and 5 Hz, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = torch.arange(T) / rate_hz
    freq = torch.tensor([0.5, 2.0, 5.0])[y]
    x = 0.5 * torch.randn(n, 6, T, generator=g)
    x[:, 0] += 2 * torch.sin(2 * np.pi * freq[:, None] * t)
    x[:, 3] += torch.cos(2 * np.pi * freq[:, None] * t)
    return x, y


@pytest.mark.parametrize("variant", ["probe", "finetune", "scratch"])
def test_supervised_variants_beat_chance(variant):
    x_train, y_train = labelled_set(60, 100, 50.0, seed=0)
    x_test, y_test = labelled_set(30, 100, 50.0, seed=1)
    torch.manual_seed(0)
    encoder = IMUEncoder(tiny_encoder_config()).eval()  # an untrained encoder: the probe sees random features
    cfg = ev.EvalConfig(steps=100, val_every=10, patience=5, fit_batch_size=16, probe_lr=1e-2, lr=1e-2,
                        encoder_lr=1e-3)
    fit, val = data.stratified_split(y_train, 0.2, seed=0)
    model, steps = ev.train_variant(variant, encoder, x_train[fit], y_train[fit], x_train[val], y_train[val], 3, cfg,
                                    seed=0, device="cpu")
    pred = ev.predict(model, x_test, 64, "cpu").argmax(1)
    m = ev.classification_metrics(y_test, pred, 3)
    assert 10 <= steps <= 100
    assert m["accuracy"] >= 0.6 and m["macro_f1"] >= 0.5  # chance is 1/3


# --------------------------------------------------------------------------------------
# The command line on a tiny synthetic world and a hand-made checkpoint
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """7 short synthetic recordings and a checkpoint dict in train.py's format (tiny encoder, tiny CLIP)."""
    from clip_vendor import FrozenCLIP
    from train import TrainConfig
    from sources.world import SynthConfig, synthesize

    mp = pytest.MonkeyPatch()
    mp.setenv("IMU2CLIP_OFFLINE", "1")
    tmp = tmp_path_factory.mktemp("evaluate")
    root = tmp / "world"
    synthesize(root, SynthConfig(recordings=7, minutes=0.5, width=16, height=16, workers=1))
    clip = FrozenCLIP("tiny")
    window = data.WindowConfig(window_sec=2.0, rate_hz=50.0)
    torch.manual_seed(0)
    cfg = tiny_encoder_config(clip.embed_dim)
    encoder = IMUEncoder(cfg)
    train_cfg = TrainConfig(clip="tiny", window_sec=2.0, rate_hz=50.0, data=str(root))
    ckpt = {"version": CHECKPOINT_VERSION, "imu_encoder": encoder.state_dict(), "encoder_config": asdict(cfg),
            "optimizer": {}, "step": 7, "epoch": 1, "config": asdict(train_cfg), "window": asdict(window),
            "data": str(root), "recordings": {"train": [], "val": []}, "clip": clip.info(), "metrics": {}}
    test = data.WindowDataset(root, "test", window, clip)  # builds the cache the tests then reuse
    yield {"root": root, "ckpt": ckpt, "tmp": tmp, "test": test}
    mp.undo()


def save(ckpt, path, **changes):
    """A copy of the checkpoint dict with nested changes ("config.modalities": ...), saved to path."""
    ckpt = copy.deepcopy(ckpt)
    for key, value in changes.items():
        *outer, last = key.split(".")
        node = ckpt
        for k in outer:
            node = node[k]
        node[last] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return str(path)


def markdown_rows(text):
    """{first cell: [other cells]} of every table row in a markdown text."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


FAST = ["--steps", "20", "--patience", "2", "--seeds", "2", "--examples", "3"]  # tiny budgets, real code paths


def test_all_tasks_write_what_they_claim(world, capsys):
    ckpt = save(world["ckpt"], world["tmp"] / "run" / "best.pt")
    ev.main(["--task", "all", "--checkpoint", ckpt, *FAST, "--train-fraction", "0.5", "1"])
    out = world["tmp"] / "run" / "eval"  # default: next to the checkpoint
    report = json.loads((out / "metrics.json").read_text())
    assert report["task"] == "all" and report["split"] == "test"
    assert report["checkpoint"]["step"] == 7 and report["checkpoint"]["config"]["clip"] == "tiny"
    assert report["clip"]["weights_source"] == "random-init" and report["clip"]["random_init"]
    assert "RANDOM-INIT" in report["clip"]["random_init_warning"]
    r = report["retrieval"]
    assert r["pool_size"] == r["windows"] > 0 and r["mode"] == "full"
    assert set(r["directions"]) == {"text->imu", "imu->text", "imu->video", "video->imu", "text->video via imu",
                                    "text->video (clip)"}
    N = r["windows"]
    texts = world["test"].texts  # the chance of each direction follows its own ground truth
    n_same_text = np.array([texts.count(t) for t in texts])
    assert r["directions"]["text->imu"]["chance"]["R@1"] == pytest.approx(np.mean(n_same_text / N), abs=1e-4)
    assert r["directions"]["imu->video"]["chance"]["R@1"] == pytest.approx(1 / N, abs=1e-4)  # unique frames
    assert r["directions"]["text->video via imu"]["chance"] == r["directions"]["text->video (clip)"]["chance"]
    for m in r["directions"].values():  # the whole split, once: no spread
        assert {k: m[k + "_std"] for k in ev.METRIC_NAMES} == dict.fromkeys(ev.METRIC_NAMES) and 1 / N <= m["MRR"] + 1e-4
    a = report["activity"]
    assert list(a["variants"]) == ["zeroshot", "probe", "finetune", "scratch"]
    assert a["val_source"] == "val recordings" and a["val_windows"] > 0 and a["seeds"] == 2
    K = len(a["class_names"])
    for name, m in a["variants"].items():
        runs = m.get("seeds", 1)  # confusions are summed over the seeds
        assert np.array(m["confusion"]).shape == (K, K) and np.sum(m["confusion"]) == runs * a["test_windows"]
        assert m["accuracy"] == pytest.approx(np.trace(m["confusion"]) / (runs * a["test_windows"]), abs=1e-4)
    assert set(a["label_efficiency"]) == {"probe", "finetune", "scratch"}
    assert all(set(c) == {"0.5", "1.0"} for c in a["label_efficiency"].values())
    pictures = {f"confusion_{v}.png" for v in a["variants"]} | {"retrieval_examples.png", "text_queries.png",
                                                                 "label_efficiency.png"}
    assert set(report["files"]) == pictures | {"metrics.json", "summary.md"}
    assert set(p.name for p in out.iterdir()) == set(report["files"])
    from PIL import Image

    examples = Image.open(out / "retrieval_examples.png").convert("RGB")
    assert examples.height >= 3 * 128 and examples.width >= 2 * 128 + 5 * 128  # 3 rows: plot + 5 frames
    green = (np.abs(np.asarray(examples).astype(int) - ev.RIGHT).sum(-1) == 0).sum()
    assert green >= 3 * 4 * 128  # every row outlines its true frame, in the top 5 or after them
    assert Image.open(out / "text_queries.png").height >= 3 * 120
    assert Image.open(out / "confusion_probe.png").height >= K * 44
    assert Image.open(out / "label_efficiency.png").size == (640, 400)
    # summary.md (and the printed table) carry exactly the numbers of metrics.json, loudly marked random-init
    err = capsys.readouterr()
    summary = (out / "summary.md").read_text()
    assert "RANDOM-INIT" in summary and summary.strip() in err.out
    assert f"{r['recordings']} recordings, {r['recordings']} new to the checkpoint" in summary
    assert "sits at chance" in summary  # transitivity cannot work with a random-init CLIP
    rows = markdown_rows(summary)
    assert rows["direction [CLIP RANDOM-INIT]"] == ["R@1", "R@10", "R@50", "MRR", "median_rank"]
    for name, m in r["directions"].items():
        for row, values in ((name, m), (f"{name} chance", m["chance"])):
            assert [float(v) for v in rows[row]] == [values[k] for k in ("R@1", "R@10", "R@50", "MRR", "median_rank")]
    for name, m in a["variants"].items():
        cells = [c.split(" ± ") for c in rows[name][:2]]
        assert [float(c[0]) for c in cells] == [m["accuracy"], m["macro_f1"]]
        assert [float(c[1]) for c in cells if len(c) > 1] == ([m["accuracy_std"], m["macro_f1_std"]]
                                                                if name != "zeroshot" else [])
    assert float(rows["chance (uniform)"][0]) == a["chance"]["uniform_accuracy"]
    assert float(rows["0.5"][0].split(" ± ")[0]) == a["label_efficiency"]["probe"]["0.5"]["accuracy"]


def test_label_efficiency_draws_each_curve_where_its_accuracies_are():
    curves = {"probe": {0.05: {"accuracy": 0.8, "accuracy_std": 0.02}, 1.0: {"accuracy": 0.9, "accuracy_std": 0.0}},
              "finetune": {0.05: {"accuracy": 0.6, "accuracy_std": 0.1}, 1.0: {"accuracy": 0.88, "accuracy_std": 0.0}},
              "scratch": {0.05: {"accuracy": 0.4, "accuracy_std": 0.05}, 1.0: {"accuracy": 0.2, "accuracy_std": 0.0}}}
    img = np.asarray(ev.draw_label_efficiency(curves, 1 / 7, "test").convert("RGB")).astype(int)
    top, bottom, left = 40, 400 - 50, 60  # accuracy 1 and 0 on the y axis, and the x axis's start (the margins)
    plot = img[top - 5:bottom + 5, left:640 - 150]  # the plot area: no axis labels, no legend
    for variant, points in curves.items():
        ys, xs = np.nonzero(np.abs(plot - ev.CURVE_COLORS[variant]).sum(-1) == 0)
        assert len(ys) > 50, variant  # a curve, not just a legend swatch
        acc_at_left = 1 - (ys[xs == xs.min()].mean() + top - 5 - top) / (bottom - top)
        assert acc_at_left == pytest.approx(points[0.05]["accuracy"], abs=0.04), variant



def test_seeds_report_mean_and_std_of_single_seed_runs(world, tmp_path):
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    args = ["--task", "probe", "--checkpoint", ckpt, "--steps", "20", "--patience", "2", "--train-fraction", "0.5",
            "--probe-lr", "3e-5"]
    single = []
    for seed in (3, 4):
        ev.main([*args, "--seed", str(seed), "--seeds", "1", "--out", str(tmp_path / f"s{seed}")])
        report = json.loads((tmp_path / f"s{seed}" / "metrics.json").read_text())
        single.append(report["activity"]["variants"]["probe"])
        assert single[-1]["accuracy_std"] is None and "±" not in (tmp_path / f"s{seed}" / "summary.md").read_text()
        assert report["config"]["probe_lr"] == 3e-5  # the flags as given: only the metrics are rounded
    ev.main([*args, "--seed", "3", "--seeds", "2", "--out", str(tmp_path / "both")])
    both = json.loads((tmp_path / "both" / "metrics.json").read_text())["activity"]["variants"]["probe"]
    acc = [m["accuracy"] for m in single]
    assert both["seeds"] == 2 and both["accuracy"] == pytest.approx(np.mean(acc), abs=1e-4)
    assert both["accuracy_std"] == pytest.approx(abs(acc[0] - acc[1]) / np.sqrt(2), abs=1e-4)  # sample std
    assert both["confusion"] == np.add(single[0]["confusion"], single[1]["confusion"]).tolist()


def test_refuses_to_test_on_training_recordings(world, tmp_path, capsys):
    test_ids = sorted(set(world["test"].recording_ids))
    for seen in ({"train": test_ids[:1], "val": []}, {"train": [], "val": test_ids}):
        ckpt = save(world["ckpt"], tmp_path / "best.pt", recordings=seen)
        with pytest.raises(SystemExit) as e:
            ev.main(["--task", "all", "--checkpoint", ckpt, "--out", str(tmp_path / "eval")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and err[-1].startswith("error: ") and "refusing" in err[-1]
        assert test_ids[0] in err[-1] and not any(line.startswith("error") for line in err[:-1])
        assert not (tmp_path / "eval").exists()
    ckpt = save(world["ckpt"], tmp_path / "best.pt", recordings={"train": ["elsewhere"], "val": []})
    ev.main(["--task", "retrieval", "--checkpoint", ckpt, "--out", str(tmp_path / "eval"), "--examples", "1"])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["test_recordings"] == {"count": len(test_ids), "new": len(test_ids)}
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert f"{len(test_ids)} recordings, {len(test_ids)} new to the checkpoint" in summary


def test_pooled_retrieval_and_labelled_npz_at_another_rate(world, tmp_path):
    # a user's file at 100 Hz with 3 s windows; the checkpoint was trained at 50 Hz on 2 s windows
    x, y = labelled_set(45, 300, 100.0, seed=0)
    split = np.where(np.arange(45) < 30, "train", "test")
    path = tmp_path / "mine.npz"
    np.savez(path, imu=x.numpy(), labels=y.numpy(), class_names=np.array(["slow", "medium", "fast"]),
             rate_hz=np.float64(100.0), split=split)
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    ev.main(["--task", "probe", "--checkpoint", ckpt, "--labelled", str(path), "--out", str(tmp_path / "lab"),
             "--steps", "20", "--seeds", "1"])
    a = json.loads((tmp_path / "lab" / "metrics.json").read_text())["activity"]
    assert a["window_samples"] == 150  # 3 s resampled to the model's 50 Hz
    # early stopping on a stratified 20% of the file's train split, never on its test split
    assert (a["train_windows"], a["val_windows"], a["test_windows"]) == (24, 6, 15)
    assert a["class_names"] == ["slow", "medium", "fast"] and list(a["variants"]) == ["probe"]
    ev.main(["--task", "retrieval", "--checkpoint", ckpt, "--pool-size", "4", "--seeds", "3",
             "--out", str(tmp_path / "pool")])
    r = json.loads((tmp_path / "pool" / "metrics.json").read_text())["retrieval"]
    assert (r["mode"], r["pool_size"], r["draws"]) == ("pooled", 4, 3)
    assert all(m["median_rank"] <= 4 for m in r["directions"].values())
    assert r["directions"]["imu->video"]["chance"]["R@1"] == pytest.approx(0.25, abs=1e-4)  # unique frames
    assert r["directions"]["text->imu"]["chance"]["R@1"] >= 0.25  # repeated narrations: more right answers


def overlapping_windows_file(path, groups=True, split=None, recordings=6, per_recording=12, rate_hz=20.0):
    """A labelled file of 2 s windows every 1 s (neighbours overlap by half, as export-labelled's do) whose IMU
    encodes where each window is: channel 0 is the time in its recording, channel 1 the recording's index."""
    T, rec, k = int(2 * rate_hz), np.repeat(np.arange(recordings), per_recording), np.tile(np.arange(per_recording),
                                                                                           recordings)
    imu = np.zeros((len(rec), 6, T), np.float32)
    imu[:, 0] = k[:, None] + np.arange(T) / rate_hz  # window k spans [k, k + 2) seconds
    imu[:, 1] = rec[:, None]
    arrays = dict(imu=imu, labels=k % 3, class_names=np.array(["a", "b", "c"]), rate_hz=np.float64(rate_hz))
    arrays.update({"groups": np.array([f"rec{r}" for r in rec])} if groups else {})
    arrays.update({"split": split(rec)} if split is not None else {})
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("split", [None, lambda rec: np.where(rec < 4, "train", "test")])
def test_labelled_groups_keep_fit_validation_and_test_apart_in_time(tmp_path, split):
    # with a groups array, no window that stops early stopping (val) or is tested overlaps a fitted one in time:
    # whole recordings go to validation, and to test when the file has no split
    path = overlapping_windows_file(tmp_path / "lab.npz", split=split)
    lab = ev.labelled_splits(ev.EvalConfig(labelled=str(path)), None, data.WindowConfig(rate_hz=20.0), None)
    spans = {p: [(int(x[1, 0]), float(x[0, 0]), float(x[0, 0]) + 2.0) for x in lab.parts[p][0]] for p in lab.parts}
    assert all(spans.values()) and sum(map(len, spans.values())) == 72
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        overlaps = [(u, v) for u in spans[a] for v in spans[b] if u[0] == v[0] and u[1] < v[2] and v[1] < u[2]]
        assert not overlaps, (a, b, overlaps[:3])
    assert {r for r, _, _ in spans["val"]}.isdisjoint(r for r, _, _ in spans["train"])


def test_labelled_file_without_groups_warns_of_overlap(world, tmp_path, capsys):
    path = overlapping_windows_file(tmp_path / "lab.npz", groups=False)
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    ev.main(["--task", "probe", "--checkpoint", ckpt, "--labelled", str(path), "--steps", "2", "--out",
             str(tmp_path / "eval")])
    warnings = json.loads((tmp_path / "eval" / "metrics.json").read_text())["warnings"]
    assert [w for w in warnings if "overlap" in w] and "overlap" in capsys.readouterr().err
    path = overlapping_windows_file(tmp_path / "lab.npz", groups=True)
    ev.main(["--task", "probe", "--checkpoint", ckpt, "--labelled", str(path), "--steps", "2", "--out",
             str(tmp_path / "eval")])
    assert not json.loads((tmp_path / "eval" / "metrics.json").read_text())["warnings"]


def test_official_protocol_is_named_in_the_report(world, tmp_path):
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    ev.main(["--task", "retrieval", "--checkpoint", ckpt, "--protocol", "official", "--seeds", "3", "--examples", "1",
             "--out", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    r, recordings = report["retrieval"], len(set(world["test"].recording_ids))
    assert "official protocol" in report["title"] and (r["mode"], r["draws"]) == ("official", 3)
    assert 1 <= r["pool_size"] <= 2 * max(1, recordings // 4)  # 25% of the test recordings, <= 2 windows each
    assert (tmp_path / "eval" / "summary.md").read_text().splitlines()[0] == f"# {report['title']}"
    for m in r["directions"].values():
        assert m["MRR"] >= 1 / r["pool_size"] - 1e-4 and m["chance"]["MRR"] >= 1 / r["pool_size"] - 1e-4


def test_checkpoint_without_text_warns(world, tmp_path, capsys):
    ckpt = save(world["ckpt"], tmp_path / "best.pt", **{"config.modalities": "imu,video"})
    ev.main(["--task", "zeroshot", "--checkpoint", ckpt, "--out", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert any("trained without text" in w for w in report["warnings"])
    assert "trained without text" in capsys.readouterr().err
    assert list(report["activity"]["variants"]) == ["zeroshot"] and "retrieval" not in report


def test_without_validation_recordings_the_full_budget_is_trained(world, tmp_path, capsys):
    ckpt = save(world["ckpt"], tmp_path / "best.pt", **{"window.val_frac": 0.0})
    ev.main(["--task", "probe", "--checkpoint", ckpt, "--steps", "7", "--out", str(tmp_path / "eval")])
    a = json.loads((tmp_path / "eval" / "metrics.json").read_text())["activity"]
    assert a["val_windows"] == 0 and a["variants"]["probe"]["steps"] == 7
    assert "every variant trains its full --steps" in capsys.readouterr().err


@pytest.mark.parametrize("change, args, message", [
    ({"version": CHECKPOINT_VERSION + 1}, [], "version"),
    ({"version": 1}, [], "an older train.py's: retrain"),  # before checkpoints listed their recordings
    ({"clip.fingerprint": "ViT-B/32|0123abcd|res=224|v1"}, [], "trained with CLIP"),  # e.g. weights now missing
    ({"window.test_frac": 0.0}, [], "test"),  # an empty test split
    ({}, ["--prompt", "a person"], "--prompt"),
    ({}, ["--device", "tpu"], "--device"),
    ({}, ["--train-fraction", "0.5", "1.5"], "--train-fraction"),
    ({}, ["--train-fraction", "0.03125"], "at most 4 decimals"),
    ({}, ["--seeds", "0"], "--seeds"),
    ({}, ["--protocol", "official", "--pool-size", "4"], "--pool-size"),
    ({}, ["--protocol", "paper"], "--protocol"),
])
def test_bad_checkpoint_or_input_is_one_line_and_exit_2(world, tmp_path, capsys, change, args, message):
    ckpt = save(world["ckpt"], tmp_path / "best.pt", **change)
    with pytest.raises(SystemExit) as e:
        ev.main(["--task", "retrieval", "--checkpoint", ckpt, "--out", str(tmp_path / "eval"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "error: " in err[-1] and message in err[-1]  # ours, or argparse's "prog: error:"
    assert not (tmp_path / "eval").exists()


def test_sliding_windows_skip_text_directions(world, tmp_path, capsys):
    ckpt = save(world["ckpt"], tmp_path / "best.pt", **{"window.mode": "sliding", "config.windows": "sliding",
                                                         "config.modalities": "imu,video"})
    ev.main(["--task", "retrieval", "--checkpoint", ckpt, "--out", str(tmp_path / "eval"), "--examples", "2"])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(report["retrieval"]["directions"]) == {"imu->video", "video->imu"}
    assert report["files"] == ["metrics.json", "retrieval_examples.png", "summary.md"]
    assert "text directions skipped" in capsys.readouterr().err


def test_labelled_file_with_wrong_channels_exits_2(world, tmp_path, capsys):
    path = tmp_path / "three.npz"
    np.savez(path, imu=np.zeros((6, 3, 100)), labels=np.arange(6) % 2, class_names=np.array(["a", "b"]),
             rate_hz=np.float64(50.0))
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    with pytest.raises(SystemExit) as e:
        ev.main(["--task", "probe", "--checkpoint", ckpt, "--labelled", str(path)])
    assert e.value.code == 2 and str(path) in capsys.readouterr().err


def test_flags_come_from_the_config():
    assert ev.parse_args([]) == ev.EvalConfig()
    cfg = ev.parse_args(["--task", "finetune", "--pool-size", "300", "--prompt", "a person {}", "--train-fraction",
                         "0.01", "0.2", "1", "--seeds", "5"])
    assert (cfg.task, cfg.pool_size, cfg.prompt, cfg.seeds) == ("finetune", 300, "a person {}", 5)
    assert cfg.train_fraction == (0.01, 0.2, 1.0)
    assert ev.TASKS["finetune"] == ("finetune", "scratch") and set(ev.TASKS["all"]) == {"retrieval", *ev.VARIANTS}
    assert set(ev.TASKS["pretrained"]) == set(ev.TASKS["all"]) - {"scratch"}


def test_checkpoint_written_by_train_py(world, tmp_path):
    """The real producer of checkpoints: one short epoch of train.py, then evaluate reads what it wrote."""
    import train

    out = tmp_path / "run"
    train.main(["--clip", "tiny", "--window-sec", "2", "--rate-hz", "50", "--data", str(world["root"]),
                "--epochs", "1", "--batch-size", "8", "--out", str(out)])
    ev.main(["--task", "retrieval", "--checkpoint", str(out / "best.pt"), "--examples", "1"])
    report = json.loads((out / "eval" / "metrics.json").read_text())
    assert report["checkpoint"]["data"] == str(world["root"]) and report["checkpoint"]["step"] >= 1
    assert report["retrieval"]["windows"] == report["retrieval"]["pool_size"] > 0


def test_task_all_on_recordings_without_activity_labels_retrieves_and_says_why_not_more(world, tmp_path):
    """Ego4D and Aria recordings have no segments.json: --task all reports retrieval and skips activity
    recognition with a warning, instead of stopping."""
    shutil.copytree(world["root"], tmp_path / "unlabelled", ignore=shutil.ignore_patterns(".cache", "segments.json"))
    ckpt = save(world["ckpt"], tmp_path / "best.pt")
    report = ev.run(ev.parse_args(["--task", "all", "--checkpoint", ckpt, "--data", str(tmp_path / "unlabelled"),
                                   "--out", str(tmp_path / "eval"), "--steps", "2"]))
    assert "retrieval" in report and "activity" not in report
    assert any("no window has an activity label" in w for w in report["warnings"])
    with pytest.raises(data.DataError, match="0 labelled windows to fit"):  # asked for by name: still an error
        ev.run(ev.parse_args(["--task", "probe", "--checkpoint", ckpt, "--data", str(tmp_path / "unlabelled"),
                              "--out", str(tmp_path / "eval2")]))
