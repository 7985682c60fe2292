"""RNN-T loss against alignment enumeration, and the in-place distillation loss."""

from __future__ import annotations

import itertools

import pytest
import torch

from dualasr.loss import (
    _forward_backward,
    distillation_loss,
    lattice_log_probs,
    rnnt_loss,
    rnnt_loss_brute_force,
)


def _random_case(gen: torch.Generator, t: int, u: int, v: int, dtype=torch.float32):
    logits = torch.randn(t, u + 1, v, generator=gen, dtype=dtype) * 2.0
    target = torch.randint(1, v, (u,), generator=gen).tolist()
    return logits, target


# T <= 5, U <= 3, V <= 5, including T = 1 and U = 0 (at most C(7, 3) = 35 paths each).
SMALL_CASES = list(itertools.product([1, 2, 3, 5], [0, 1, 2, 3], [2, 3, 5]))


@pytest.mark.parametrize("t,u,v", SMALL_CASES)
def test_loss_and_grad_match_brute_force(t: int, u: int, v: int) -> None:
    gen = torch.Generator().manual_seed(100 * t + 10 * u + v)
    logits, target = _random_case(gen, t, u, v)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)

    got = rnnt_loss(
        a[None], torch.tensor([target], dtype=torch.long).reshape(1, u),
        torch.tensor([t]), torch.tensor([u]),
    )
    ref = rnnt_loss_brute_force(b, target)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-4), (got.item(), ref.item())

    (g_got,) = torch.autograd.grad(got, a)
    (g_ref,) = torch.autograd.grad(ref, b)
    assert torch.allclose(g_got, g_ref, atol=1e-4), (g_got - g_ref).abs().max()


def test_nonzero_blank_index() -> None:
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 3, 4, generator=gen)
    target = [0, 1]  # label 0 is a real token when blank = 3
    lens = (torch.tensor([4]), torch.tensor([2]))
    got = rnnt_loss(logits[None], torch.tensor([target]), *lens, blank=3)
    ref = rnnt_loss_brute_force(logits, target, blank=3)
    assert torch.allclose(got, ref, atol=1e-4)


def test_batched_variable_lengths_equal_per_utterance() -> None:
    gen = torch.Generator().manual_seed(0)
    lens = [(5, 3), (2, 1), (4, 0), (1, 2)]  # (T_b, U_b)
    t_max, u_max, v = 5, 3, 5
    # Garbage (large) values in the padding must not leak into loss or gradients.
    logits = torch.randn(len(lens), t_max, u_max + 1, v, generator=gen) * 50.0
    targets = torch.full((len(lens), u_max), -1, dtype=torch.long)  # -1 padding
    refs = []
    for i, (tb, ub) in enumerate(lens):
        lg, tgt = _random_case(gen, tb, ub, v)
        logits[i, :tb, : ub + 1] = lg
        targets[i, :ub] = torch.tensor(tgt, dtype=torch.long)
        refs.append((lg, tgt))
    logits.requires_grad_(True)
    t_len = torch.tensor([tb for tb, _ in lens])
    u_len = torch.tensor([ub for _, ub in lens])

    per_utt = rnnt_loss(logits, targets, t_len, u_len, reduction="none")
    assert per_utt.shape == (len(lens),)
    total = rnnt_loss(logits, targets, t_len, u_len, reduction="sum")
    mean = rnnt_loss(logits, targets, t_len, u_len, reduction="mean")
    assert torch.allclose(total, per_utt.sum()) and torch.allclose(mean, per_utt.mean())

    (grad,) = torch.autograd.grad(total, logits)
    for i, ((tb, ub), (lg, tgt)) in enumerate(zip(lens, refs)):
        lg = lg.clone().requires_grad_(True)
        ref = rnnt_loss_brute_force(lg, tgt)
        (g_ref,) = torch.autograd.grad(ref, lg)
        assert torch.allclose(per_utt[i], ref, atol=1e-4)
        assert torch.allclose(grad[i, :tb, : ub + 1], g_ref, atol=1e-4)
        pad = grad[i].clone()
        pad[:tb, : ub + 1] = 0
        assert pad.abs().max() == 0  # nothing flows into padding


def test_empty_targets_is_sum_of_blanks() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 1, 3, generator=gen)
    targets = torch.zeros(2, 0, dtype=torch.long)
    got = rnnt_loss(logits, targets, torch.tensor([4, 2]), torch.tensor([0, 0]), reduction="none")
    lp = torch.log_softmax(logits, -1)[..., 0, 0]  # [B, T]
    assert torch.allclose(got, -torch.stack([lp[0].sum(), lp[1, :2].sum()]), atol=1e-5)


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 3, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 2], [3, 0]])
    t_len, u_len = torch.tensor([3, 2]), torch.tensor([2, 1])
    assert torch.autograd.gradcheck(
        lambda x: rnnt_loss(x, targets, t_len, u_len, reduction="sum"), (logits,)
    )


def test_half_logits_compute_in_float32() -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 3, 3, 4, generator=gen)
    targets = torch.tensor([[1, 2]])
    half = logits.half().requires_grad_(True)
    got = rnnt_loss(half, targets, torch.tensor([3]), torch.tensor([2]))
    got.backward()
    ref = rnnt_loss_brute_force(logits.half().float()[0], [1, 2])
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-4)
    assert half.grad is not None and half.grad.dtype == torch.float16


def test_longer_lattice_is_finite_and_conserves_flow() -> None:
    gen = torch.Generator().manual_seed(9)
    logits = (torch.randn(2, 120, 31, 16, generator=gen) * 4).requires_grad_(True)
    targets = torch.randint(1, 16, (2, 30), generator=gen)
    t_len, u_len = torch.tensor([120, 77]), torch.tensor([30, 12])
    loss = rnnt_loss(logits, targets, t_len, u_len)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()

    # Every alignment crosses each anti-diagonal n = t + u exactly once, so the
    # transition posteriors (= -gradients wrt the lattice log-probs) sum to 1 per diagonal.
    blank_lp, label_lp = lattice_log_probs(logits.detach(), targets, u_len)
    _, g_blank, g_label = _forward_backward(blank_lp, label_lp, t_len, u_len)
    flow = -(g_blank.clone())
    flow[:, :, :-1] -= g_label
    t_idx = torch.arange(120)[:, None]
    u_idx = torch.arange(31)[None, :]
    for b in range(2):
        for n in range(int(t_len[b] + u_len[b])):
            on_diag = flow[b][(t_idx + u_idx) == n].sum()
            # float32 on a ~700-nat loss: exponents carry ~1e-4 rounding.
            assert abs(on_diag.item() - 1.0) < 5e-4, (b, n, on_diag.item())
    # And float32 agrees with the same recursion in float64.
    loss64, gb64, gl64 = _forward_backward(blank_lp.double(), label_lp.double(), t_len, u_len)
    assert torch.allclose(2 * loss.double(), loss64.sum(), rtol=1e-6)
    assert (g_blank.double() - gb64).abs().max() < 1e-3
    assert (g_label.double() - gl64).abs().max() < 1e-3


# --------------------------------------------------------------------------- distillation


def _kd_reference(student, teacher, targets, t_len, u_len, shift):
    """Loop-over-nodes reference of the 3-way KL distillation. Returns [B]."""
    out = []
    ps, pt = torch.softmax(student.float(), -1), torch.softmax(teacher.float(), -1)
    for b in range(student.shape[0]):
        tb, ub = int(t_len[b]), int(u_len[b])
        total, count = 0.0, 0
        for t in range(tb):
            ts = t - shift
            if not 0 <= ts < tb:
                continue
            for u in range(ub + 1):
                dists = []
                for p, tt in ((ps, t), (pt, ts)):
                    lab = p[b, tt, u, targets[b, u]] if u < ub else torch.tensor(0.0)
                    blk = p[b, tt, u, 0]
                    dists.append(torch.stack([lab, blk, (1 - lab - blk).clamp_min(1e-8)]))
                s, q = dists
                kl = sum(q[k] * (q[k].log() - s[k].log()) for k in range(3) if q[k] > 0)
                total, count = total + kl, count + 1
        out.append(total / max(count, 1) if count else torch.tensor(0.0))
    return torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in out])


def _kd_batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 6, 4, 5, generator=gen)
    teacher = torch.randn(3, 6, 4, 5, generator=gen)
    targets = torch.tensor([[1, 2, 3], [4, 1, -1], [2, -1, -1]])
    return student, teacher, targets, torch.tensor([6, 4, 5]), torch.tensor([3, 2, 1])


def test_distillation_zero_when_equal_positive_otherwise() -> None:
    student, teacher, targets, t_len, u_len = _kd_batch()
    same = distillation_loss(student, student.clone(), targets, t_len, u_len)
    assert abs(same.item()) < 1e-6
    diff = distillation_loss(student, teacher, targets, t_len, u_len)
    assert diff.item() > 1e-3


@pytest.mark.parametrize("shift", [-7, -2, -1, 0, 1, 3])
def test_distillation_matches_node_loop(shift: int) -> None:
    student, teacher, targets, t_len, u_len = _kd_batch(1)
    got = distillation_loss(student, teacher, targets, t_len, u_len, shift=shift, reduction="none")
    ref = _kd_reference(student, teacher, targets, t_len, u_len, shift)
    assert torch.allclose(got, ref, atol=1e-5), (got, ref)
    if shift == -7:  # every teacher frame falls outside [0, T_b): nothing left to match
        assert torch.equal(got, torch.zeros(3))


def test_distillation_teacher_gets_no_gradient() -> None:
    student, teacher, targets, t_len, u_len = _kd_batch(2)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss = distillation_loss(student, teacher, targets, t_len, u_len, shift=-1)
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


def test_distillation_shift_semantics() -> None:
    """Student at frame t copies the teacher at frame t + 1 (emits one frame early)."""
    gen = torch.Generator().manual_seed(4)
    teacher = torch.randn(1, 5, 3, 4, generator=gen)
    student = torch.randn(1, 5, 3, 4, generator=gen)
    student[:, :-1] = teacher[:, 1:]  # student[t] = teacher[t + 1]; frame 4 is unmatched
    args = (torch.tensor([[1, 2]]), torch.tensor([5]), torch.tensor([2]))
    # s = -1: student frame t is compared with teacher frame t + 1 -> a perfect match,
    # and the student's last frame (teacher frame 5 does not exist) is excluded.
    assert distillation_loss(student, teacher, *args, shift=-1).item() < 1e-6
    assert distillation_loss(student, teacher, *args, shift=0).item() > 1e-3
    assert distillation_loss(student, teacher, *args, shift=1).item() > 1e-3
    # Changing an excluded node (student frame 4 under s = -1) changes nothing.
    student2 = student.clone()
    student2[:, 4] = 100.0 * torch.randn(3, 4, generator=gen)
    assert distillation_loss(student2, teacher, *args, shift=-1).item() < 1e-6


def test_distillation_half_logits_float32() -> None:
    student, teacher, targets, t_len, u_len = _kd_batch(3)
    got = distillation_loss(student.half(), teacher.half(), targets, t_len, u_len)
    ref = distillation_loss(student.half().float(), teacher.half().float(), targets, t_len, u_len)
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-6)
