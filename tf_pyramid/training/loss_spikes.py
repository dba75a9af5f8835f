"""Loss spikes: an epoch whose mean training loss jumps far above the epochs before it.

A run at too high a learning rate can leave its minimum in one epoch (on full MNIST, BL3 at 28 px
with [-1, 1] inputs went from a mean loss of ~0.1 to 29.9 in its 4th epoch) and still finish
with finite numbers, so the NaN check never fires and the final accuracy alone hides why it is
low. The trainer records every epoch's mean loss here and says when one is a spike.

Rule: epoch e is a spike when its mean loss is more than `FACTOR` times the lowest mean loss of
the epochs before it AND more than `MIN_INCREASE` above it (the second keeps a rise from 0.01 to
0.04 in a nearly solved task from counting). The reference is the lowest so far, not the
previous epoch, so that a second spike right after a first still counts.
"""
import math

FACTOR = 3.0
MIN_INCREASE = 0.1  # nats of mean cross-entropy (+ the small attention terms)


def spike_reference(previous_losses, loss, factor=FACTOR, min_increase=MIN_INCREASE):
    """The reference (lowest finite earlier loss) when `loss` is a spike against it, else None."""
    earlier = [value for value in previous_losses if math.isfinite(value)]
    if not earlier or not math.isfinite(loss):
        return None
    reference = min(earlier)
    if loss > factor * max(reference, 0.0) and loss - reference > min_increase:
        return reference
    return None


class LossSpikeMonitor:
    """Epoch mean losses of one training process and the spikes among them.

    `record(epoch, loss)` returns the spike entry `{"epoch", "loss", "reference"}` (also kept in
    `spikes`, for metrics.json) or None. Epochs are 1-based, as the trainer's log lines.
    """

    def __init__(self, factor=FACTOR, min_increase=MIN_INCREASE):
        self.factor, self.min_increase = factor, min_increase
        self.losses = []
        self.spikes = []

    def record(self, epoch, loss):
        loss = float(loss)
        reference = spike_reference(self.losses, loss, self.factor, self.min_increase)
        self.losses.append(loss)
        if reference is None:
            return None
        entry = {"epoch": int(epoch), "loss": loss, "reference": float(reference)}
        self.spikes.append(entry)
        return entry

    def message(self, entry):
        """The WARNING line of a spike."""
        return (f"Loss spike: epoch {entry['epoch']}'s mean training loss {entry['loss']:.4g} is "
                f"{entry['loss'] / max(entry['reference'], 1e-12):.1f}x the lowest of the epochs "
                f"before it ({entry['reference']:.4g}; rule: > {self.factor:g}x and > "
                f"+{self.min_increase:g}). The run may have left its minimum: see docs/training.md "
                "'Loss spikes'.")
