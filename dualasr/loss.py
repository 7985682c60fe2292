"""RNN-T loss and the dual-mode in-place knowledge-distillation loss.

Lattice conventions (Graves 2012), per utterance b with T_b frames and U_b labels:

* node (t, u), 0 <= t < T_b, 0 <= u <= U_b: "u labels emitted, reading frame t";
* blank at (t, u) moves to (t + 1, u); label y_{u+1} at (t, u) moves to (t, u + 1);
* an alignment ends with the blank emitted at (T_b - 1, U_b).

The loss is computed by a custom autograd Function on the two gathered log-prob
lattices (blank [B, T, U+1] and correct-label [B, T, U]); autograd carries the
analytic lattice gradient back through the gather and log-softmax to the logits.
The forward/backward recursions run over anti-diagonals n = t + u: every node on
a diagonal depends only on the previous one, so each step is one vectorised op
over (batch, u) and no cumulative sums are needed (keeps float32 exact enough).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

_NEG_INF = float("-inf")

__all__ = [
    "ctc_loss",
    "rnnt_loss",
    "rnnt_loss_brute_force",
    "distillation_loss",
    "lattice_log_probs",
]


# --------------------------------------------------------------------------- helpers


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(per_utt: Tensor, reduction: str) -> Tensor:
    """per_utt: [B] -> scalar ("mean"/"sum") or [B] ("none")."""
    if reduction == "mean":
        return per_utt.mean()
    if reduction == "sum":
        return per_utt.sum()
    return per_utt


def lattice_log_probs(
    logits: Tensor, targets: Tensor, target_lengths: Tensor, blank: int = 0
) -> tuple[Tensor, Tensor]:
    """Gather blank and correct-label log-probs from raw joiner logits (>= float32).

    Args:
        logits: [B, T, U+1, V] raw joiner output (any float dtype).
        targets: [B, >=U] int64 labels, padded arbitrarily beyond target_lengths.
        target_lengths: [B] int64.
        blank: blank index.

    Returns:
        blank_lp: [B, T, U+1] log P(blank | t, u).
        label_lp: [B, T, U]   log P(y_{u+1} | t, u); entries with u >= U_b are
            finite but meaningless (padding targets are replaced by `blank`).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, T, U+1, V], got shape {tuple(logits.shape)}")
    batch, frames, u1, vocab = logits.shape
    max_u = u1 - 1
    if targets.shape[0] != batch or targets.shape[1] < max_u:
        raise ValueError(
            f"targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}"
        )
    # why: half precision loses the lattice sums; float64 is kept (gradcheck).
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    # logsumexp instead of a full log_softmax: only [B, T, U+1] extra memory.
    lse = torch.logsumexp(x, dim=-1)  # [B, T, U+1]
    blank_lp = x[..., blank] - lse

    tgt = targets[:, :max_u].long()
    pos = torch.arange(max_u, device=logits.device)
    valid = pos[None, :] < target_lengths[:, None].to(logits.device)
    # why: padding may hold -1 or anything else; gather needs an in-range index.
    tgt = torch.where(valid, tgt, torch.full_like(tgt, blank)).clamp(0, vocab - 1)
    idx = tgt[:, None, :, None].expand(batch, frames, max_u, 1)
    label_lp = x[:, :, :max_u, :].gather(-1, idx).squeeze(-1) - lse[:, :, :max_u]
    return blank_lp, label_lp


def _skew(x: Tensor, n_diag: int, fill: float) -> Tensor:
    """Re-index a lattice by anti-diagonal: out[b, n, u] = x[b, n - u, u].

    x: [B, T, W] -> [B, n_diag, W]; cells with n - u outside [0, T) get `fill`.
    """
    batch, frames, width = x.shape
    n = torch.arange(n_diag, device=x.device)[:, None]
    u = torch.arange(width, device=x.device)[None, :]
    t = n - u  # [n_diag, W]
    inside = (t >= 0) & (t < frames)
    idx = t.clamp(0, max(frames - 1, 0)).expand(batch, n_diag, width)
    out = x.gather(1, idx)
    return out.masked_fill(~inside, fill)


def _unskew(s: Tensor, frames: int) -> Tensor:
    """Inverse of `_skew`: s [B, N, W] -> x [B, frames, W] with x[b, t, u] = s[b, t + u, u]."""
    batch, _, width = s.shape
    t = torch.arange(frames, device=s.device)[:, None]
    u = torch.arange(width, device=s.device)[None, :]
    idx = (t + u).expand(batch, frames, width)
    return s.gather(1, idx)


def _valid_nodes(
    frames: int, u1: int, logit_lengths: Tensor, target_lengths: Tensor
) -> Tensor:
    """Bool [B, T, U+1]: t < T_b and u <= U_b."""
    t = torch.arange(frames, device=logit_lengths.device)
    u = torch.arange(u1, device=logit_lengths.device)
    return (t[None, :, None] < logit_lengths[:, None, None]) & (
        u[None, None, :] <= target_lengths[:, None, None]
    )


# --------------------------------------------------------------------------- RNN-T core


def _forward_backward(
    blank_lp: Tensor, label_lp: Tensor, logit_lengths: Tensor, target_lengths: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Alphas/betas over the lattice and the analytic gradients of -log P.

    Args:
        blank_lp: [B, T, U+1]; label_lp: [B, T, U]; lengths: int64 [B].

    Returns:
        neg_log_p: [B] per-utterance -log P(y | x).
        grad_blank: [B, T, U+1] d(-log P)/d blank_lp (zero on padding).
        grad_label: [B, T, U]   d(-log P)/d label_lp (zero on padding).
    """
    batch, frames, u1 = blank_lp.shape
    max_u = u1 - 1
    n_diag = frames + max_u  # diagonals n = t + u for t < T, u <= U
    dev = blank_lp.device
    valid = _valid_nodes(frames, u1, logit_lengths, target_lengths)  # [B, T, U+1]
    # Padding cells must never contribute: force them to -inf before skewing.
    blank_m = blank_lp.masked_fill(~valid, _NEG_INF)
    label_ok = valid[:, :, :max_u] & (
        torch.arange(max_u, device=dev)[None, None, :] < target_lengths[:, None, None]
    )
    label_m = label_lp.masked_fill(~label_ok, _NEG_INF)

    blank_s = _skew(blank_m, n_diag, _NEG_INF)  # [B, N, U+1]
    # Pad label to U+1 columns (column U has no outgoing label arc).
    label_pad = torch.cat([label_m, label_m.new_full((batch, frames, 1), _NEG_INF)], dim=2)
    label_s = _skew(label_pad, n_diag, _NEG_INF)  # [B, N, U+1]
    neg_col = blank_lp.new_full((batch, 1), _NEG_INF)

    # alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + label[t, u-1])
    start = blank_lp.new_full((batch, u1), _NEG_INF)
    start[:, 0] = 0.0  # alpha[0, 0] = log 1
    alphas = [start]
    for n in range(1, n_diag):
        prev = alphas[-1]
        from_blank = prev + blank_s[:, n - 1]
        from_label = torch.cat([neg_col, (prev + label_s[:, n - 1])[:, :-1]], dim=1)
        alphas.append(torch.logaddexp(from_blank, from_label))
    alpha = _unskew(torch.stack(alphas, dim=1), frames).masked_fill(~valid, _NEG_INF)

    # beta[t, u] = logaddexp(blank[t, u] + beta[t+1, u], label[t, u] + beta[t, u+1]),
    # beta[T_b-1, U_b] = blank[T_b-1, U_b]. The terminal diagonal differs per utterance.
    term_diag = logit_lengths - 1 + target_lengths  # [B]
    cols = torch.arange(u1, device=dev)[None, :]
    is_term_col = cols == target_lengths[:, None]  # [B, U+1]
    betas: list[Tensor] = []
    nxt = blank_lp.new_full((batch, u1), _NEG_INF)  # diagonal n + 1
    for n in range(n_diag - 1, -1, -1):
        via_blank = blank_s[:, n] + nxt
        via_label = label_s[:, n] + torch.cat([nxt[:, 1:], neg_col], dim=1)
        cur = torch.logaddexp(via_blank, via_label)
        term = is_term_col & (term_diag[:, None] == n)
        cur = torch.where(term, blank_s[:, n], cur)
        betas.append(cur)
        nxt = cur
    betas.reverse()
    beta = _unskew(torch.stack(betas, dim=1), frames).masked_fill(~valid, _NEG_INF)

    log_p = beta[:, 0, 0]  # [B]

    # beta after a blank: beta[t+1, u], with a virtual 0 after the terminal blank.
    beta_next_t = torch.cat([beta[:, 1:], beta.new_full((batch, 1, u1), _NEG_INF)], dim=1)
    t_idx = torch.arange(frames, device=dev)[None, :, None]
    terminal = (t_idx == (logit_lengths - 1)[:, None, None]) & is_term_col[:, None, :]
    beta_next_t = beta_next_t.masked_fill(terminal, 0.0)
    lp = log_p[:, None, None]
    grad_blank = -torch.exp(alpha + blank_m + beta_next_t - lp)
    grad_label = -torch.exp(alpha[:, :, :max_u] + label_m + beta[:, :, 1:] - lp)
    return -log_p, grad_blank, grad_label


class _RNNTLatticeLoss(torch.autograd.Function):
    """-log P(y|x) per utterance from the gathered lattices; analytic backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        blank_lp: Tensor,
        label_lp: Tensor,
        logit_lengths: Tensor,
        target_lengths: Tensor,
    ) -> Tensor:
        with torch.no_grad():
            loss, g_blank, g_label = _forward_backward(
                blank_lp.detach(), label_lp.detach(), logit_lengths, target_lengths
            )
        # why: gradients fall out of the same alphas/betas; keep them rather than the inputs.
        ctx.save_for_backward(g_blank, g_label)
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        g_blank, g_label = ctx.saved_tensors
        scale = grad_out[:, None, None]
        return g_blank * scale, g_label * scale, None, None


def rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = 0,
    reduction: str = "mean",
) -> Tensor:
    """RNN-T negative log-likelihood.

    Args:
        logits: [B, T, U+1, V] raw joiner output.
        targets: [B, U] int64, padded arbitrarily beyond target_lengths.
        logit_lengths: [B] int64, 1 <= T_b <= T.
        target_lengths: [B] int64, 0 <= U_b <= U.
        blank: blank index.
        reduction: "mean" (batch mean of per-utterance -log P), "sum" or "none" ([B]).

    Returns:
        Scalar, or [B] for reduction="none"; float32 (float64 for float64 logits).
    """
    _check_reduction(reduction)
    logit_lengths = logit_lengths.to(device=logits.device, dtype=torch.long)
    target_lengths = target_lengths.to(device=logits.device, dtype=torch.long)
    if bool((logit_lengths < 1).any()) or bool((logit_lengths > logits.shape[1]).any()):
        raise ValueError("logit_lengths must lie in [1, T]")
    if bool((target_lengths < 0).any()) or bool((target_lengths > logits.shape[2] - 1).any()):
        raise ValueError("target_lengths must lie in [0, U] with U + 1 = logits.shape[2]")

    blank_lp, label_lp = lattice_log_probs(logits, targets, target_lengths, blank)
    per_utt = _RNNTLatticeLoss.apply(blank_lp, label_lp, logit_lengths, target_lengths)
    return _reduce(per_utt, reduction)


def rnnt_loss_brute_force(logits: Tensor, target: list[int], blank: int = 0) -> Tensor:
    """-log P(y|x) by enumerating every alignment. Test reference only (tiny T, U).

    Args:
        logits: [T, U+1, V] raw joiner output for one utterance.
        target: U labels.

    Returns:
        Scalar tensor (differentiable w.r.t. logits).
    """
    frames = logits.shape[0]
    n_lab = len(target)
    logp = torch.log_softmax(logits.float(), dim=-1)
    steps = frames + n_lab
    path_scores = []
    # The final step is always the terminal blank; labels go among the first steps - 1.
    for label_pos in itertools.combinations(range(steps - 1), n_lab):
        positions = set(label_pos)
        t = u = 0
        terms = []
        for step in range(steps):
            if step in positions:
                terms.append(logp[t, u, target[u]])
                u += 1
            else:
                terms.append(logp[t, u, blank])
                t += 1
        path_scores.append(torch.stack(terms).sum())
    return -torch.logsumexp(torch.stack(path_scores), dim=0)


# --------------------------------------------------------------------------- distillation


def _three_way_log_probs(
    blank_lp: Tensor, label_lp: Tensor, target_lengths: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Collapse each node's V-way distribution to {correct label, blank, rest}.

    Args: blank_lp [B, T, U+1], label_lp [B, T, U], target_lengths [B].

    Returns:
        log_label [B, T, U+1] (-inf at u = U_b, where no label is "correct"),
        log_blank [B, T, U+1], log_rest [B, T, U+1] (rest clamped to >= 1e-8),
        has_label bool [B, T, U+1] (u < U_b).
    """
    batch, frames, u1 = blank_lp.shape
    cols = torch.arange(u1, device=blank_lp.device)
    has_label = (cols[None, :] < target_lengths[:, None])[:, None, :].expand(batch, frames, u1)
    label_full = torch.cat([label_lp, label_lp.new_full((batch, frames, 1), _NEG_INF)], dim=2)
    log_label = label_full.masked_fill(~has_label, _NEG_INF)
    rest = (1.0 - log_label.exp() - blank_lp.exp()).clamp_min(1e-8)
    return log_label, blank_lp, rest.log(), has_label


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    shift: int = 0,
    blank: int = 0,
    reduction: str = "mean",
) -> Tensor:
    """In-place knowledge distillation of the dual-mode paper (full-context teacher).

    At every valid lattice node the student's and the teacher's distributions are
    collapsed to 3 classes {y_{u+1}, blank, rest} and KL(teacher || student) is
    summed, then divided by the utterance's number of valid nodes. The teacher is
    detached.

    `shift` s moves the teacher in time: the student at frame t is matched to the
    teacher at frame t - s (s < 0 pulls student emissions earlier, s > 0 later).
    Nodes whose teacher frame t - s falls outside [0, T_b) are excluded.

    Args:
        student_logits, teacher_logits: [B, T, U+1, V] raw joiner outputs.
        targets: [B, U] int64; logit_lengths, target_lengths: [B] int64.

    Returns:
        Scalar, or [B] for reduction="none"; float32.
    """
    _check_reduction(reduction)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student {tuple(student_logits.shape)} and teacher "
            f"{tuple(teacher_logits.shape)} logits differ in shape"
        )
    dev = student_logits.device
    logit_lengths = logit_lengths.to(device=dev, dtype=torch.long)
    target_lengths = target_lengths.to(device=dev, dtype=torch.long)
    batch, frames, u1, _ = student_logits.shape

    s_lab, s_blk, s_rest, has_label = _three_way_log_probs(
        *lattice_log_probs(student_logits, targets, target_lengths, blank), target_lengths
    )
    with torch.no_grad():
        t_lab, t_blk, t_rest, _ = _three_way_log_probs(
            *lattice_log_probs(teacher_logits.detach(), targets, target_lengths, blank),
            target_lengths,
        )
        # Student frame t reads teacher frame t - shift.
        t_src = torch.arange(frames, device=dev) - shift  # [T]
        in_range = (t_src[None, :] >= 0) & (t_src[None, :] < logit_lengths[:, None])  # [B, T]
        idx = t_src.clamp(0, frames - 1)[None, :, None].expand(batch, frames, u1)
        t_lab, t_blk, t_rest = (x.gather(1, idx) for x in (t_lab, t_blk, t_rest))
        valid = _valid_nodes(frames, u1, logit_lengths, target_lengths) & in_range[:, :, None]

    # KL(p || q) = sum_k p_k (log p_k - log q_k); the label class is absent at u = U_b
    # (p = q = 0 there), so it is masked instead of computing 0 * (-inf - -inf).
    kl_label = torch.where(has_label, t_lab.exp() * (t_lab - s_lab), torch.zeros_like(s_blk))
    kl = kl_label + t_blk.exp() * (t_blk - s_blk) + t_rest.exp() * (t_rest - s_rest)
    kl = torch.where(valid, kl, torch.zeros_like(kl))
    n_valid = valid.flatten(1).sum(dim=1).clamp_min(1).to(kl.dtype)  # [B]
    per_utt = kl.flatten(1).sum(dim=1) / n_valid
    return _reduce(per_utt, reduction)


def ctc_loss(logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int = 0) -> Tensor:
    """The auxiliary CTC head's loss: batch mean of the per-utterance CTC negative log-likelihood
    (float32; impossible alignments count as zero instead of inf).

    Args:
        logits: [B, T, V] raw CTC head output.
        targets: [B, U] int64, padded beyond target_lengths.
        logit_lengths, target_lengths: [B].
    """
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, V]
    return nn.functional.ctc_loss(log_probs, targets, logit_lengths, target_lengths, blank=blank,
                                  reduction="none", zero_infinity=True).mean()
