"""The SoFlow model: a network F wrapped into a solution function, its losses and samplers.

Time convention: t = 0 is data, t = 1 is noise, and f(x_t, t, s) maps the state at time t
to the state at time s <= t along the probability-flow ODE.

    f(x_t, t, s) = a(t, s) x_t + b(t, s) F(x_t, t, s)          (solution function)
    v(x_t, t)    = d_s a(t, t) x_t + d_s b(t, t) F(x_t, t, t)   (its velocity at s = t)

Training mixes a flow-matching term on the velocity with a solution-consistency term that
compares f at (x_t, t) and at a point x_l one Euler step closer along the conditional
velocity; no Jacobian-vector product is needed.

Times: a method with one time takes it by position or keyword (``velocity(x_t, t)``); a
method with two or more takes them by keyword only (``solution(x_t, t=t, s=s)``), so they
cannot be swapped. A time is a float (the same for every sample) or a (B,) tensor.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from . import _checks
from .coefficients import get_coefficients
from .config import SoFlowConfig
from .guidance import guided_velocity
from .paths import expand_like, get_path
from .time_sampling import intermediate_time, l_ratio, logit_normal, sample_consistency_times


class SoFlow(nn.Module):
    """SoFlow around a network with the contract ``net(x, t, s, y) -> F`` (shape of x).

    The network takes x (B, ...), times t and s (B,) and labels y (B,) or None, and returns
    F with the shape of x. ``net.num_classes`` is the number of classes K of a conditional
    net (0 or absent: unconditional); labels run 0..K-1, and y=None asks for the
    unconditional prediction (the null class K of classifier-free guidance, which the
    losses also use through cfg_mask; passing K as a label is refused). A net trained on augmented data also takes
    ``augment_labels=`` (B, k); the losses pass them to every network call of both terms when
    given, and sampling leaves them out (no augmentation).

    Example::

        model = SoFlow(ToyMLP(), SoFlowConfig.preset("toy"))
        loss, logs = model.loss(x0, step=step, total_steps=2000)   # x0 (B, 2)
        x = model.sample(torch.randn(1000, 2), nfe=1)              # one network evaluation
        f = model.solution(x_t, t=0.8, s=0.2)                      # f(x_t, t, s)
    """

    def __init__(self, net: nn.Module, config: SoFlowConfig | None = None):
        """Wrap ``net`` (contract above) with the loss settings ``config`` (default SoFlowConfig())."""
        _checks.network(net, owner="SoFlow")
        super().__init__()
        self.net = net
        self.config = config if config is not None else SoFlowConfig()
        self.path = get_path(self.config.noising_type)
        self.coefficients = get_coefficients(self.config.coefficient_type)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    # ------------------------------------------------------------------ solution function
    def _net(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None, aug: Tensor | None = None) -> Tensor:
        """F(x, t, s, y), checked to have the shape of x; the augmentation labels go in only when given, so nets without them work."""
        F = self.net(x, t, s, y) if aug is None else self.net(x, t, s, y, augment_labels=aug)
        return _checks.output("net", F, x)

    def _solution(
        self, x_t: Tensor, t: Tensor, s: Tensor, y: Tensor | None, aug: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        F = self._net(x_t, t, s, y, aug)  # (B, ...)
        return self._combine(x_t, F, t, s), F

    def _combine(self, x_t: Tensor, F: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """a(t, s) x_t + b(t, s) F for x_t, F (B, ...) and t, s (B,)."""
        a = expand_like(self.coefficients.a(t, s), x_t)
        b = expand_like(self.coefficients.b(t, s), x_t)
        return a * x_t + b * F

    def _velocity_from_F(self, x_t: Tensor, F: Tensor) -> Tensor:
        return self.coefficients.ds_a * x_t + self.coefficients.ds_b * F

    def solution(self, x_t: Tensor, *, t: Tensor | float, s: Tensor | float, y: Tensor | None = None) -> Tensor:
        """f_theta(x_t, t, s) for x_t (B, ...), times t, s (B,) with 0 <= s <= t <= 1."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        s = _checks.times("s", s, B, x_t)
        _checks.ordered("s", s, "t", t)
        y = _checks.labels(y, B, self.num_classes)
        return self._solution(x_t, t, s, y)[0]

    def velocity(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """v_theta(x_t, t) = d_s f_theta(x_t, t, s) at s = t; shape of x_t."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        y = _checks.labels(y, B, self.num_classes)
        return self._velocity_from_F(x_t, self._net(x_t, t, t, y))

    # ------------------------------------------------------------------ losses
    def flow_matching_loss(
        self,
        x0: Tensor,
        noise: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        cfg_mask: Tensor | None = None,
        *,
        augment_labels: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Adaptive-weighted flow-matching loss at times t (B,); returns (loss, logs)."""
        B = self._check_pair(x0, noise)
        t = _checks.times("t", t, B, x0)
        y, cfg_mask = self._check_labels(y, cfg_mask, B)
        aug = _augment_labels(augment_labels, B)
        return self._objective(x0, noise, t, t, t[:0], y, cfg_mask, aug, n_fm=B)

    def consistency_loss(
        self,
        x0: Tensor,
        noise: Tensor,
        *,
        t: Tensor,
        l: Tensor,
        s: Tensor,
        y: Tensor | None = None,
        cfg_mask: Tensor | None = None,
        augment_labels: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Solution-consistency loss with s <= l < t (each (B,)); returns (loss, logs)."""
        B = self._check_pair(x0, noise)
        t = _checks.times("t", t, B, x0)
        l = _checks.times("l", l, B, x0)
        s = _checks.times("s", s, B, x0)
        _checks.ordered("s", s, "l", l)
        _checks.ordered("l", l, "t", t, strict=True)
        y, cfg_mask = self._check_labels(y, cfg_mask, B)
        aug = _augment_labels(augment_labels, B)
        return self._objective(x0, noise, t, s, l, y, cfg_mask, aug, n_fm=0)

    def loss(
        self,
        x0: Tensor,
        y: Tensor | None = None,
        *,
        step: int,
        total_steps: int,
        generator: torch.Generator | None = None,
        augment_labels: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One training loss on a batch x0 (B, ...) with labels y (B,) or None, at training step
        ``step`` of ``total_steps`` (they set the consistency schedule r(k, K)): the first
        int(ratio * B) samples get the flow-matching term, the rest the consistency term.
        Returns (loss, logs). Labels are checked (one device synchronisation when given).

        ``augment_labels`` (B, k): labels of the augmentation applied to x0, passed to the net.
        """
        config = self.config
        B = _checks.batch_tensor("x0", x0)
        aug = _augment_labels(augment_labels, B)
        y = _checks.labels(y, B, self.num_classes)
        n_fm = int(config.velocity_loss_ratio * B)
        draw = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        noise = torch.randn(x0.shape, **draw)
        t_fm = logit_normal(n_fm, config.time_mean[0], config.time_std[0], **draw)
        t_c, s_c = sample_consistency_times(B - n_fm, config.time_mean[1:], config.time_std[1:], **draw)
        r = l_ratio(config.l_schedule, config.l_init_ratio, config.l_end_ratio, step, total_steps)
        l_c = intermediate_time(t_c, s_c, r)
        cfg_mask = None
        if y is not None and config.cfg_drop_rate > 0:
            cfg_mask = torch.rand(B, device=x0.device, generator=generator) < config.cfg_drop_rate
        t = torch.cat([t_fm, t_c])
        s = torch.cat([t_fm, s_c])
        return self._objective(x0, noise, t, s, l_c, y, cfg_mask, aug, n_fm=n_fm)

    def forward(
        self,
        x0: Tensor,
        y: Tensor | None = None,
        *,
        step: int | None = None,
        total_steps: int | None = None,
        generator: torch.Generator | None = None,
        augment_labels: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``model(x0, y, step=, total_steps=)`` is the training loss (``loss``), so DDP and
        the trainer can call the module; to generate, call ``sample(noise)``."""
        if step is None or total_steps is None:
            raise ValueError(
                "SoFlow's forward is its training loss: call model(x0, y, step=k, total_steps=K) "
                "(or model.loss); to generate samples call model.sample(noise, nfe=1)"
            )
        return self.loss(x0, y, step=step, total_steps=total_steps, generator=generator,
                         augment_labels=augment_labels)

    def _objective(self, x0, noise, t, s, l_c, y, cfg_mask, aug, *, n_fm: int):
        """Shared body of the losses. Rows [:n_fm] get the flow-matching term (s = t there),
        rows [n_fm:] the consistency term with intermediate times l_c."""
        config, coef = self.config, self.coefficients
        B = x0.shape[0]
        n_c = B - n_fm
        fm, sc = slice(None, n_fm), slice(n_fm, None)
        x_t, v_t = self.path.interpolate(x0, noise, t)  # (B, ...) each
        y_in = y
        if y is not None and cfg_mask is not None:
            y_in = torch.where(cfg_mask, torch.full_like(y, self.num_classes), y)
        rows = lambda z, part: None if z is None else z[part]  # noqa: E731

        # The one pass with gradient: F(x_t, t, t) on FM rows, F(x_t, t, s) on SCM rows.
        # A net with active dropout gets its SCM rows evaluated separately, under the same
        # random state as the no-grad pass at (x_l, l, s) below.
        stochastic = n_c > 0 and _has_active_dropout(self.net)
        if stochastic:
            # (no pass when there are no FM rows, as in the CIFAR-10 recipe)
            F_fm = self._net(x_t[fm], t[fm], s[fm], rows(y_in, fm), rows(aug, fm)) if n_fm else x_t[:0]
        else:
            F = self._net(x_t, t, s, y_in, aug)  # (B, ...)
            F_fm, F_sc = F[fm], F[sc]

        with torch.no_grad():
            u = v_t
            if y is not None and config.uses_guidance:
                u = self._guided_target(x_t, t, v_t, y, cfg_mask, F_fm.detach(), n_fm, aug)
            if n_c:
                t_c, s_c = t[sc], s[sc]
                x_l = x_t[sc] + expand_like(l_c - t_c, x_t) * u[sc]  # Euler step along u
                with _same_randomness(x0.device, stochastic):
                    f_l = self._solution(x_l, l_c, s_c, rows(y_in, sc), rows(aug, sc))[0]  # (n_c, ...)
        if stochastic:
            F_sc = self._net(x_t[sc], t[sc], s[sc], rows(y_in, sc), rows(aug, sc))

        logs: dict[str, Tensor] = {}
        total = x0.new_zeros(())
        if n_fm:
            v_pred = self._velocity_from_F(x_t[fm], F_fm)
            mse = (v_pred - u[fm]).flatten(1).pow(2).mean(1)  # (n_fm,)
            w = 1.0 / (abs(coef.ds_b) * (mse.detach() + config.eps) ** config.p)
            total = total + (n_fm / B) * (w * mse).mean()
            logs.update(fm_mse=mse.detach().mean(), fm_weight=w.mean())
        if n_c:
            b = coef.b(t_c, s_c)
            f_t = self._combine(x_t[sc], F_sc.detach(), t_c, s_c)  # (n_c, ...), no gradient
            delta = (f_t - f_l) / expand_like(t_c - l_c, x_t)  # (n_c, ...), no gradient
            mse = delta.flatten(1).pow(2).mean(1)  # (n_c,)
            w = 1.0 / (mse + config.eps) ** config.p
            # Gradient equals that of w |delta|^2 times (t - l) / (2 |b|), without dividing by b.
            surrogate = (F_sc * (expand_like(w, x_t) * delta)).flatten(1).mean(1)  # (n_c,)
            total = total + (n_c / B) * (torch.sign(b) * surrogate).mean()
            logs.update(scm_mse=mse.mean(), scm_weight=w.mean())
        logs["loss"] = total.detach()
        return total, logs

    def _guided_target(self, x_t, t, v_t, y, cfg_mask, F_fm, n_fm, aug=None):
        """Guided velocity target (no gradient) for every row; masked rows keep v_t.

        The conditional velocity on FM rows is the gradient pass itself (same input), so one
        extra forward covers the unconditional velocity of all rows and the conditional one
        of the SCM rows.
        """
        config = self.config
        B = x_t.shape[0]
        sc = slice(n_fm, None)
        null = torch.full_like(y, self.num_classes)
        x_in = torch.cat([x_t, x_t[sc]])
        t_in = torch.cat([t, t[sc]])
        aug_in = None if aug is None else torch.cat([aug, aug[sc]])
        F = self._net(x_in, t_in, t_in, torch.cat([null, y[sc]]), aug_in)  # (B + n_c, ...)
        v_all = self._velocity_from_F(x_in, F)
        v_uncond = v_all[:B]
        v_cond = torch.cat([self._velocity_from_F(x_t[:n_fm], F_fm), v_all[B:]])
        target = guided_velocity(
            v_t, v_cond, v_uncond, t,
            scale=config.cfg_scale, mix_ratio=config.mix_ratio, decay_time=config.cfg_decay_time,
        )
        if cfg_mask is not None:
            target = torch.where(expand_like(cfg_mask, v_t), v_t, target)
        return target

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    @_checks.in_eval_mode
    def sample(
        self, noise: Tensor, y: Tensor | None = None, *, nfe: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Map noise (B, ...) to data in ``nfe`` network evaluations.

        Step i jumps from t_i = 1 - i / nfe straight to 0, then re-noises the estimate to
        t_{i+1} with fresh Gaussian noise; the last jump's estimate is returned. Runs in eval
        mode and gives the module back in the mode it found.
        """
        B = _checks.batch_tensor("noise", noise)
        y = _checks.labels(y, B, self.num_classes)
        if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
            raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
        x = noise
        zeros = noise.new_zeros(B)
        for i in range(nfe):
            t_i = noise.new_full((B,), 1.0 - i / nfe)
            x0_hat = self._solution(x, t_i, zeros, y)[0]
            if i + 1 < nfe:
                t_next = noise.new_tensor(1.0 - (i + 1) / nfe)
                fresh = torch.randn(noise.shape, device=noise.device, dtype=noise.dtype, generator=generator)
                x = self.path.alpha(t_next) * x0_hat + self.path.beta(t_next) * fresh  # re-noise
        return x0_hat

    # ------------------------------------------------------------------ helpers
    def _check_pair(self, x0: Tensor, noise: Tensor) -> int:
        B = _checks.batch_tensor("x0", x0)
        _checks.batch_tensor("noise", noise)
        _checks.same_shape("noise", noise, "x0", x0)
        return B

    def _check_labels(self, y, cfg_mask, B):
        y = _checks.labels(y, B, self.num_classes)
        cfg_mask = _checks.mask("cfg_mask", cfg_mask, B)
        if cfg_mask is not None and y is None:
            raise ValueError("cfg_mask needs labels y: it marks which labels are dropped")
        return y, cfg_mask


def _augment_labels(aug: Tensor | None, B: int) -> Tensor | None:
    if aug is not None and (not isinstance(aug, Tensor) or aug.dim() != 2 or aug.shape[0] != B):
        got = tuple(aug.shape) if isinstance(aug, Tensor) else type(aug).__name__
        raise ValueError(f"augment_labels must be a tensor of shape (B, k) with B = {B}, got {got}")
    return aug


def _has_active_dropout(net: nn.Module) -> bool:
    return net.training and any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in net.modules()
    )


def _same_randomness(device: torch.device, enabled: bool):
    """Run a block on a fork of the random state, so the next draw repeats the block's draws."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)
