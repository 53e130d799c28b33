"""Tests for loss.py: symmetric InfoNCE, the temperature, and the gathered loss on 2 gloo processes."""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from loss import Temperature, contrastive_loss, multimodal_loss


def _hand_written_loss(a, b, tau):
    """Symmetric InfoNCE written out with python loops and math.log/exp."""
    a = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in a.tolist()]
    b = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in b.tolist()]
    n = len(a)
    sim = [[sum(x * y for x, y in zip(a[i], b[j])) / tau for j in range(n)] for i in range(n)]
    a_to_b = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    b_to_a = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return (a_to_b + b_to_a) / 2


def test_equals_hand_written_cross_entropy():
    torch.manual_seed(0)
    a, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    for tau in (0.1, 0.5):
        assert contrastive_loss(a, b, tau).item() == pytest.approx(_hand_written_loss(a, b, tau), rel=1e-9)


def test_symmetric_under_swapping_modalities():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    assert contrastive_loss(a, b, 0.1).item() == pytest.approx(contrastive_loss(b, a, 0.1).item(), rel=1e-6)


def test_near_zero_for_aligned_embeddings_at_small_temperature():
    a = torch.eye(4, 8) * 3.0  # orthogonal rows; the scale is removed by normalisation
    assert contrastive_loss(a, a.clone(), 0.01).item() < 1e-6
    assert contrastive_loss(a, a.clone(), 1.0).item() > 0.1  # not by accident: a warm softmax is far from 0


def test_log_batch_size_for_constant_embeddings():
    for B in (2, 8, 33):
        a = torch.ones(B, 5)
        b = torch.full((B, 5), 2.0)
        assert contrastive_loss(a, b, 0.1).item() == pytest.approx(math.log(B), rel=1e-6)


def test_invariant_to_embedding_scale_and_batch_order():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    perm = torch.randperm(6)
    base = contrastive_loss(a, b, 0.1).item()
    assert contrastive_loss(3 * a, 0.5 * b, 0.1).item() == pytest.approx(base, rel=1e-5)
    assert contrastive_loss(a[perm], b[perm], 0.1).item() == pytest.approx(base, rel=1e-5)


def test_bad_inputs_are_clear_errors():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(a, torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        contrastive_loss(torch.randn(4, 3, 2), torch.randn(4, 3, 2), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        contrastive_loss(torch.randn(4), torch.randn(4), 0.1)
    for tau in (0.0, -0.1, torch.tensor(0.0)):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            contrastive_loss(a, a, tau)
    with pytest.raises(ValueError, match="at least one"):
        multimodal_loss(a, {}, 0.1)


def test_multimodal_loss_sums_the_target_modalities():
    torch.manual_seed(0)
    imu, video, text = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4)
    total, parts = multimodal_loss(imu, {"video": video, "text": text}, 0.1)
    assert parts["video"] == pytest.approx(contrastive_loss(imu, video, 0.1).item(), rel=1e-6)
    assert parts["text"] == pytest.approx(contrastive_loss(imu, text, 0.1).item(), rel=1e-6)
    assert total.item() == pytest.approx(parts["video"] + parts["text"], rel=1e-6)


def test_fixed_temperature_is_not_a_parameter():
    t = Temperature(0.1)
    assert list(t.parameters()) == []
    assert t().item() == pytest.approx(0.1, rel=1e-6)
    assert "log_scale" in t.state_dict()


def test_learned_temperature_gets_gradient_and_is_clamped():
    t = Temperature(0.1, learn=True, max_scale=100.0)
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    contrastive_loss(a, b, t()).backward()
    assert t.log_scale.grad is not None and t.log_scale.grad.item() != 0.0
    with torch.no_grad():
        t.log_scale.fill_(10.0)  # scale e^10 > 100, as an optimizer step might leave it
    t.clamp_()
    assert t().item() == pytest.approx(0.01, rel=1e-6)
    contrastive_loss(a, b, t()).backward()  # at the bound the gradient still flows, so it can come back
    assert t.log_scale.grad.item() != 0.0
    with torch.no_grad():
        t.log_scale.fill_(-3.0)  # tau > 1
    t.clamp_()
    assert t().item() == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        Temperature(0.0)


# --- distributed: 2 gloo processes on CPU ---------------------------------------------------------------------

def _global_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)  # inputs x, targets b


def _distributed_worker(rank, world_size, store_path, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    proj = torch.nn.Linear(5, 3)  # the same weights on every process, as DDP ensures
    x, b = _global_batch()
    rows = slice(rank * 4, (rank + 1) * 4)
    b_local = b[rows].clone().requires_grad_(True)
    loss = contrastive_loss(proj(x[rows]), b_local, 0.2)
    loss.backward()
    for grad in (proj.weight.grad, proj.bias.grad):  # DDP's gradient averaging
        dist.all_reduce(grad)
        grad /= world_size
    local_only = contrastive_loss(proj(x[rows]), b[rows], 0.2, gather=False)
    torch.save({"loss": loss.detach(), "local_only": local_only.detach(), "weight_grad": proj.weight.grad,
                "bias_grad": proj.bias.grad, "b_grad": b_local.grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_match_the_single_process_loss_and_gradient(tmp_path):
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    torch.manual_seed(0)
    proj = torch.nn.Linear(5, 3)
    x, b = _global_batch()
    b = b.clone().requires_grad_(True)
    loss = contrastive_loss(proj(x), b, 0.2)  # single process, concatenated batch
    loss.backward()

    assert (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2 == pytest.approx(loss.item(), rel=1e-5)
    for r in range(2):
        assert torch.allclose(ranks[r]["weight_grad"], proj.weight.grad, atol=1e-6)
        assert torch.allclose(ranks[r]["bias_grad"], proj.bias.grad, atol=1e-6)
        # each process's embeddings get the gradient of all processes' losses: W x that of their mean
        assert torch.allclose(ranks[r]["b_grad"] / 2, b.grad[r * 4:(r + 1) * 4], atol=1e-6)
        with torch.no_grad():
            alone = contrastive_loss(proj(x[r * 4:(r + 1) * 4]), b[r * 4:(r + 1) * 4], 0.2)
        assert ranks[r]["local_only"].item() == pytest.approx(alone.item(), rel=1e-5)
    assert ranks[0]["loss"].item() != pytest.approx(ranks[0]["local_only"].item(), rel=1e-3)  # negatives pooled
