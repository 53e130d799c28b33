"""Tests for train.py: its helpers, the gradient path, and short end-to-end runs on a tiny synthetic dataset
(one process, resumed, and 2 processes under torchrun)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import clip_vendor
import data
import loss
import model
import train
from sources import world
from loss import Temperature
from model import IMUEncoder, IMUEncoderConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline_single_thread(monkeypatch):
    """No download attempts; one intra-op thread (the test machine's 2 cores are shared)."""
    monkeypatch.setenv("IMU2CLIP_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- helpers ----------------------------------------------------------------------------------------------------

def test_lr_warmup_then_constant_or_cosine():
    cfg = train.TrainConfig(lr=1e-3, warmup_steps=10)
    assert train.get_lr(0, cfg, 100) == pytest.approx(1e-4)
    assert train.get_lr(9, cfg, 100) == pytest.approx(1e-3)
    assert train.get_lr(80, cfg, 100) == pytest.approx(1e-3)
    cfg.cosine = True
    assert train.get_lr(10, cfg, 100) == pytest.approx(1e-3)
    assert train.get_lr(55, cfg, 100) == pytest.approx(5e-4)
    assert train.get_lr(100, cfg, 100) == pytest.approx(0.0, abs=1e-12)


def test_epoch_batches_seeded_per_epoch_and_sharded():
    one = train.epoch_batches(103, 10, seed=1, epoch=0)
    assert len(one) == 10 and all(len(b) == 10 for b in one)  # the last 3 windows are dropped (drop_last)
    flat = np.concatenate(one)
    assert len(set(flat.tolist())) == 100 and flat.max() < 103
    assert all(np.array_equal(a, b) for a, b in zip(one, train.epoch_batches(103, 10, seed=1, epoch=0)))
    assert not np.array_equal(flat, np.concatenate(train.epoch_batches(103, 10, seed=1, epoch=1)))
    assert not np.array_equal(flat, np.concatenate(train.epoch_batches(103, 10, seed=2, epoch=0)))
    big = train.epoch_batches(103, 20, seed=1, epoch=3)
    shards = [train.epoch_batches(103, 10, seed=1, epoch=3, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(big)  # every process takes the same number of steps
    for step, batch in enumerate(big):  # each step's global batch is the single-process batch of 2 x 10
        assert sorted(np.concatenate([shards[0][step], shards[1][step]]).tolist()) == sorted(batch.tolist())


def test_flags_come_from_the_config():
    assert train.parse_args([]) == train.TrainConfig()
    cfg = train.parse_args(["--modalities", "imu,text", "--batch-size", "8", "--cosine", "--lr", "1e-3"])
    assert (cfg.modalities, cfg.batch_size, cfg.cosine, cfg.lr) == ("imu,text", 8, True, 1e-3)
    assert [f.name for f in fields(train.TrainConfig) if not f.metadata.get("help")] == []  # a help text on each
    assert train.parse_args(["--no-learn-temperature"]).learn_temperature is False  # the default is learned
    for bad in (["--bogus", "1"], ["--batch-size", "many"], ["--video-mode", "clip_3frames"]):
        with pytest.raises(SystemExit) as e:
            train.parse_args(bad)
        assert e.value.code == 2


def test_parse_modalities():
    assert loss.parse_modalities("imu,video,text") == ["video", "text"]
    assert loss.parse_modalities("text, imu") == ["text"]
    for bad, message in (("imu,audio", "unknown modality 'audio'"), ("video,text", "imu is required"),
                         ("imu", "at least one target")):
        with pytest.raises(ValueError, match=message):
            loss.parse_modalities(bad)


def test_gradients_reach_only_the_imu_encoder():
    """Targets are CLIP embeddings computed beforehand (as the cache does): training changes the encoder (and a
    learned temperature) and nothing of CLIP."""
    clip = clip_vendor.FrozenCLIP("tiny")
    rng = np.random.default_rng(0)
    video = clip.embed_images(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))  # (8, D)
    text = clip.embed_texts([f"c walks {i}" for i in range(8)])
    clip_before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    torch.manual_seed(0)
    trainable = train.Trainable(IMUEncoder(IMUEncoderConfig(embed_dim=clip.embed_dim)),
                                Temperature(0.1, learn=True))
    enc_before = {k: v.clone() for k, v in trainable.state_dict().items()}
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=1e-3)
    batch = {"imu": torch.randn(8, 6, 100), "video_emb": torch.from_numpy(video), "text_emb": torch.from_numpy(text)}
    loss, parts, _ = train.batch_loss(trainable, batch, ["video", "text"], "cpu")
    loss.backward()
    assert set(parts) == {"video", "text"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.parameters())
    assert all(p.grad is None for p in clip.model.parameters())
    optimizer.step()
    assert all(torch.equal(v, clip.model.state_dict()[k]) for k, v in clip_before.items())
    assert all(not torch.equal(v, trainable.state_dict()[k]) for k, v in enc_before.items())


def test_load_checkpoint_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        model.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        model.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"version": model.CHECKPOINT_VERSION, "imu_encoder": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt: not a complete IMU2CLIP checkpoint .missing encoder_config"):
        model.load_checkpoint(tmp_path / "partial.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: not an IMU2CLIP checkpoint of version 2 .found list"):
        model.load_checkpoint(tmp_path / "list.pt")
    torch.save({"x": Path("a")}, tmp_path / "unsafe.pt")  # not loadable with weights_only=True
    with pytest.raises(ValueError, match="unsafe.pt: not a readable checkpoint"):
        model.load_checkpoint(tmp_path / "unsafe.pt")


# --- end to end, on a tiny synthetic dataset ---------------------------------------------------------------------

# IMU -> text is what a random-init tiny CLIP makes learnable on synthetic data: narrations name the activity.
FLAGS = ["--clip", "tiny", "--modalities", "imu,video,text", "--window-sec", "2", "--rate-hz", "50",
         "--epochs", "4", "--lr", "3e-3", "--warmup-steps", "5", "--cosine", "--learn-temperature",
         "--log-every", "3", "--seed", "0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    world.synthesize(root, world.SynthConfig(recordings=24, minutes=1.0, width=16, height=16, workers=2))
    return root


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    """An uninterrupted single-process run: 4 epochs of batches of 32 windows."""
    out = tmp_path_factory.mktemp("runs") / "full"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IMU2CLIP_OFFLINE", "1")
            train.main(FLAGS + ["--data", str(dataset), "--out", str(out), "--batch-size", "32"])
    finally:
        torch.set_num_threads(threads)
    return out


def _total_steps(out):
    """4 epochs of whole batches of 32 training windows (the last incomplete batch is dropped)."""
    return 4 * (json.loads((out / "config.json").read_text())["train_windows"] // 32)


def _log(out, event):
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["event"] == event]


def test_short_run_lowers_the_loss_and_beats_chance(full_run, dataset):
    steps = _log(full_run, "train")
    assert [r["step"] for r in steps][-1] == _total_steps(full_run)
    assert np.mean([r["loss"] for r in steps[-3:]]) < np.mean([r["loss"] for r in steps[:3]]) - 0.5
    vals = _log(full_run, "val")
    assert [r["epoch"] for r in vals] == [1, 2, 3, 4]
    assert vals[-1]["val_loss"] < vals[0]["val_loss"]

    best = model.load_checkpoint(full_run / "best.pt")  # weights_only=True inside
    assert best["metrics"]["val_mrr"] == max(r["val_mrr"] for r in vals)
    assert best["clip"]["weights_source"] == "random-init" and best["clip"]["name"] == "tiny"
    assert best["config"]["modalities"] == "imu,video,text" and best["data"] == str(dataset)
    # the untrained encoder (same seed), evaluated the same way, is the baseline to beat
    clip = clip_vendor.FrozenCLIP("tiny")
    val = data.WindowDataset(dataset, "val", data.WindowConfig(**best["window"]), clip)
    torch.manual_seed(0)
    untrained = train.Trainable(IMUEncoder(IMUEncoderConfig(embed_dim=clip.embed_dim)), Temperature(0.1))
    baseline = train.validate(untrained, val, ["video", "text"], 32, "cpu")
    assert best["metrics"]["imu_to_text_MRR"] > 1.5 * max(baseline["imu_to_text_MRR"], baseline["chance_mrr"])
    # the checkpoint reloads into the same encoder: evaluating it again gives the stored metrics
    temperature = Temperature(0.1, learn=True)
    temperature.load_state_dict(best["temperature"])
    again = train.validate(train.Trainable(model.encoder_from_checkpoint(best), temperature), val,
                           ["video", "text"], 32, "cpu")
    assert again["val_mrr"] == pytest.approx(best["metrics"]["val_mrr"], rel=1e-6)
    assert again["val_loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-5)


def test_run_writes_config_log_and_checkpoint(full_run):
    config = json.loads((full_run / "config.json").read_text())
    assert config["clip"]["weights_source"] == "random-init"
    assert config["encoder_config"]["embed_dim"] == clip_vendor.CONFIGS["tiny"].embed_dim
    assert config["config"]["batch_size"] == 32 and config["processes"] == 1
    assert _log(full_run, "start")[0]["clip"] == config["clip"]
    ckpt = torch.load(full_run / "checkpoint.pt", weights_only=True)
    assert {"version", "imu_encoder", "encoder_config", "optimizer", "step", "epoch", "config", "window", "data",
            "recordings", "clip", "metrics"} <= set(ckpt)
    assert (ckpt["epoch"], ckpt["step"]) == (4, _total_steps(full_run))
    assert not list(full_run.glob("*.tmp-*"))  # atomic writes leave no temporary files


class _Killed(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(full_run, dataset, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    args = FLAGS + ["--data", str(dataset), "--out", str(out), "--batch-size", "32"]
    save = train.save_checkpoint

    def killed_after_epoch_2(path, ckpt):
        save(path, ckpt)
        if path.name == "checkpoint.pt" and ckpt["epoch"] == 2:
            raise _Killed  # as if the process died right after writing the epoch-2 checkpoint

    monkeypatch.setattr(train, "save_checkpoint", killed_after_epoch_2)
    with pytest.raises(_Killed):
        train.main(args)
    assert model.load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    monkeypatch.setattr(train, "save_checkpoint", save)
    train.main(args + ["--resume"])

    a = torch.load(full_run / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
    for k in a["imu_encoder"]:
        assert torch.equal(a["imu_encoder"][k], b["imu_encoder"][k]), k
    assert torch.equal(a["temperature"]["log_scale"], b["temperature"]["log_scale"])
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert a["metrics"] == b["metrics"]
    assert torch.load(full_run / "best.pt", weights_only=True)["epoch"] == \
        torch.load(out / "best.pt", weights_only=True)["epoch"]
    assert [r["loss"] for r in _log(out, "train") if r["epoch"] > 2] == \
        [r["loss"] for r in _log(full_run, "train") if r["epoch"] > 2]


def test_weight_decay_reaches_only_weight_matrices_and_kernels(dataset, tmp_path):
    """--weight-decay pulls the conv kernels and the GRU's matrices (2 or more dimensions) towards 0, never the
    temperature, the biases or the GroupNorm parameters: read back from the optimizer state train.py saves, where
    each parameter's moments have its shape."""
    out = tmp_path / "wd"
    train.main(FLAGS + ["--data", str(dataset), "--out", str(out), "--batch-size", "32", "--epochs", "1",
                        "--weight-decay", "0.1"])
    opt = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]
    decay_by_dims = [(opt["state"][i]["exp_avg"].dim(), group["weight_decay"])
                     for group in opt["param_groups"] for i in group["params"]]
    assert {dims for dims, _ in decay_by_dims} == {0, 1, 2, 3}  # tau, norms and GRU biases, GRU matrices, kernels
    assert all(decay == (0.1 if dims >= 2 else 0.0) for dims, decay in decay_by_dims), decay_by_dims


def test_default_optimizer_steps_as_the_official_plain_adam():
    """With --weight-decay 0 (the default), the two parameter groups take exactly the steps of torch.optim.Adam over
    every parameter (the official optimizer), bit for bit."""
    cfg, g = train.TrainConfig(), torch.Generator().manual_seed(0)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(train.Trainable(IMUEncoder(IMUEncoderConfig(embed_dim=16)), Temperature(0.1, learn=True)))
    ours, adam = train.make_optimizer(models[0], cfg), torch.optim.Adam(models[1].parameters(), lr=cfg.lr)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in models[0].parameters()]
        for model, opt in zip(models, (ours, adam)):
            for p, grad in zip(model.parameters(), grads):
                p.grad = grad.clone()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))


def _one_step_worker(rank, world, store, out_dir):
    """One training step of 16 windows on each of 2 gloo processes, through train.py's own pieces, in float64:
    with the gather (as train.py runs) and without it (each process sees only its own 16 negatives)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    for gather in (True, False):
        trainable, batch = _float64_step_inputs()
        ddp = DistributedDataParallel(trainable)  # averages the gradients over processes in backward
        rows = slice(rank * 16, (rank + 1) * 16)
        step_loss, _, _ = train.batch_loss(ddp, {k: v[rows] for k, v in batch.items()}, ["video", "text"], "cpu",
                                           gather=gather)
        step_loss.backward()
        mean_loss = step_loss.detach().clone()
        dist.all_reduce(mean_loss)
        torch.save({"loss": mean_loss / world, "grads": {n: p.grad for n, p in trainable.named_parameters()}},
                   f"{out_dir}/rank{rank}-gather{gather}.pt")
    dist.destroy_process_group()


def _float64_step_inputs():
    """A small encoder with a learned temperature, and a global batch of 32 windows, the same on every process."""
    torch.manual_seed(0)
    trainable = train.Trainable(IMUEncoder(IMUEncoderConfig(embed_dim=16)), Temperature(0.1, learn=True)).double()
    g = torch.Generator().manual_seed(1)
    batch = {"imu": torch.randn(32, 6, 100, generator=g, dtype=torch.float64),
             "video_emb": torch.randn(32, 16, generator=g, dtype=torch.float64),
             "text_emb": torch.randn(32, 16, generator=g, dtype=torch.float64)}
    return trainable, batch


def test_one_step_on_two_processes_equals_one_process(tmp_path):
    """2 x 16 windows with gathered negatives = 1 x 32 windows, for one step, exactly (float64): the same loss and
    the same gradient of every parameter after DDP's all-reduce. Without the gather both differ, so this check
    fails when the gather is removed."""
    mp.spawn(_one_step_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    trainable, batch = _float64_step_inputs()
    one_loss, _, _ = train.batch_loss(trainable, batch, ["video", "text"], "cpu")
    one_loss.backward()
    for gather in (True, False):
        for rank in range(2):
            r = torch.load(tmp_path / f"rank{rank}-gather{gather}.pt", weights_only=True)
            same_loss = r["loss"].item() == pytest.approx(one_loss.item(), rel=1e-12)
            same_grads = [torch.allclose(r["grads"][n], p.grad, rtol=1e-9, atol=1e-12 * p.grad.abs().max().item())
                          for n, p in trainable.named_parameters()]
            assert (same_loss and all(same_grads)) if gather else not (same_loss or any(same_grads))


def test_two_processes_under_torchrun_run_end_to_end_close_to_one_process(full_run, dataset, tmp_path):
    """The whole run under torchrun (2 x 16 windows): it runs, records 2 processes, lowers the loss, writes
    a loadable checkpoint, and its logged losses stay close to the 1 x 32 run (full_run)."""
    out = tmp_path / "ddp"
    env = dict(os.environ, IMU2CLIP_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *FLAGS, "--data", str(dataset), "--out", str(out), "--batch-size", "16"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["processes"] == 2
    one, two = _log(full_run, "train"), _log(out, "train")
    assert [r["step"] for r in two] == [r["step"] for r in one] and two[-1]["loss"] < two[0]["loss"] - 0.5
    # Float32 sums in another order drift over the run's 28-36 steps: measured up to 1.4e-4 relative (8e-8 on other CPUs); 2e-3
    # allows 14x that, while not gathering the negatives changes every logged loss by 19-22% (measured).
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=2e-3)
    ckpt = model.load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (4, _total_steps(full_run))
    emb = model.encoder_from_checkpoint(ckpt)(torch.randn(2, 6, 100))
    assert emb.shape == (2, clip_vendor.CONFIGS["tiny"].embed_dim) and torch.isfinite(emb).all()


def test_a_refused_out_lock_stops_every_process(dataset, tmp_path):
    """Two processes of one process group (as torchrun starts them) on an --out that another run holds: rank 0's
    refusal reaches rank 1 too (rank0_first), so both exit with code 2 at once, one error line in all, no traceback,
    instead of rank 1 waiting in a collective for a rank 0 that has gone."""
    out = tmp_path / "held"
    data.lock_out(out)  # held by this process, as another run would hold it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, IMU2CLIP_OFFLINE="1", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), WORLD_SIZE="2")
    cmd = [sys.executable, str(ROOT / "train.py"), *FLAGS, "--data", str(dataset), "--out", str(out)]
    try:
        ranks = [subprocess.Popen(cmd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stderr=subprocess.PIPE,
                                  text=True) for r in range(2)]
        errs = [p.communicate(timeout=120)[1] for p in ranks]
    finally:
        data._unlock()
    assert [p.returncode for p in ranks] == [2, 2], errs
    assert errs[0].splitlines()[-1] == f"error: --out {out}: in use by another run (PID {os.getpid()}); wait for it " \
                                       f"to end, or choose another --out"
    assert errs[1] == "" and "Traceback" not in errs[0]


def _exit_2_with_one_line(args, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_bad_input_exits_2_with_one_line(full_run, dataset, tmp_path, capsys):
    base = FLAGS + ["--data", str(dataset), "--out", str(tmp_path / "x")]
    assert "unknown modality 'audio'" in _exit_2_with_one_line(base + ["--modalities", "imu,audio"], capsys)
    assert "imu is required" in _exit_2_with_one_line(base + ["--modalities", "video,text"], capsys)
    (tmp_path / "empty").mkdir()
    assert "no recordings" in _exit_2_with_one_line(FLAGS + ["--data", str(tmp_path / "empty")], capsys)
    assert "no window" in _exit_2_with_one_line(base + ["--window-sec", "500"], capsys)
    assert "no such checkpoint" in _exit_2_with_one_line(base + ["--resume"], capsys)
    assert "encoder needs at least" in _exit_2_with_one_line(base + ["--window-sec", "0.3"], capsys)
    assert "no pretrained weights" in _exit_2_with_one_line(base + ["--require-pretrained"], capsys)
    # a checkpoint trained with another CLIP (here: pretrained ViT-B/32) cannot be resumed with tiny
    other = torch.load(full_run / "checkpoint.pt", weights_only=True)
    other["clip"] = {"name": "ViT-B/32", "weights_source": "pretrained", "sha256": "ab" * 32,
                     "fingerprint": "ViT-B/32|" + "ab" * 32}
    (tmp_path / "other").mkdir()
    torch.save(other, tmp_path / "other" / "checkpoint.pt")
    line = _exit_2_with_one_line(FLAGS + ["--data", str(dataset), "--out", str(tmp_path / "other"), "--resume"],
                                 capsys)
    assert "trained with CLIP ViT-B/32" in line
    line = _exit_2_with_one_line(FLAGS + ["--data", str(dataset), "--out", str(full_run), "--resume",
                                          "--batch-size", "32", "--lr", "5e-4"], capsys)
    assert "--lr" in line
    # with --cosine the schedule spans every epoch, so growing --epochs on resume would change it
    line = _exit_2_with_one_line(FLAGS + ["--data", str(dataset), "--out", str(full_run), "--resume",
                                          "--batch-size", "32", "--epochs", "6"], capsys)
    assert "learning-rate schedule" in line


def test_a_rank_that_fails_to_build_its_share_stops_every_rank(tmp_path):
    """Under torchrun every rank embeds its share of the cache; rank 1's share (the 2nd, 4th, ... recording) holds
    a broken recording: both processes stop with exit code 2 and rank 0 prints rank 1's one error line."""
    world.synthesize(tmp_path / "d", world.SynthConfig(recordings=4, minutes=0.5, width=16, height=16, workers=1))
    broken = sorted((tmp_path / "d").iterdir())[1] / "imu.npy"
    broken.write_bytes(b"")
    env = dict(os.environ, IMU2CLIP_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
           *FLAGS, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--batch-size", "4"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and re.search(r"exitcode\s*: 2", done.stderr), done.stderr[-3000:]
    # the one line, printed by rank 0, is rank 1's: rank 0 built its own share, then heard of rank 1's failure
    assert len(errors) == 1 and str(broken) in errors[0] and "recordings indexed and embedded by rank 0" in done.stderr


@pytest.mark.parametrize("part, edit", [("processes", "2"), ("train", "added"), ("val", "removed")])
def test_resume_refuses_another_process_count_or_other_recordings(full_run, dataset, tmp_path, capsys, part, edit):
    """--resume refuses what would silently change the shuffle, the global batch or the split: another process
    count, or another set of train/val recordings (a recording added to the dataset since), naming what differs."""
    ckpt = torch.load(full_run / "checkpoint.pt", weights_only=True)
    if part == "processes":
        ckpt["processes"], expected = 2, "2 process"  # trained under torchrun --nproc_per_node=2
    elif edit == "added":  # the dataset has gained this training recording since the checkpoint was written
        expected = ckpt["recordings"]["train"].pop(0)
    else:  # a validation recording the checkpoint lists is gone from the dataset
        ckpt["recordings"]["val"].append(expected := "gone_recording")
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    line = _exit_2_with_one_line(FLAGS + ["--data", str(dataset), "--out", str(tmp_path / "run"), "--batch-size", "32",
                                          "--resume"], capsys)
    assert expected in line and (part in line or "process" in line), line


def test_a_fresh_run_leaves_no_checkpoint_of_an_earlier_one(full_run, dataset, tmp_path, monkeypatch, capsys):
    """A new run (no --resume) into an --out that holds an earlier run: even stopped before its first checkpoint, it
    leaves no best.pt or checkpoint.pt of the earlier run beside its own config.json and log.jsonl."""
    out = tmp_path / "run"
    shutil.copytree(full_run, out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "batch_loss", interrupted)  # Ctrl-C at the first step
    with pytest.raises(SystemExit) as e:
        train.main(FLAGS + ["--data", str(dataset), "--out", str(out), "--batch-size", "32", "--seed", "7"])
    assert e.value.code == 130 and "replacing the earlier run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "log.jsonl"]
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 7
