"""The paper's learning-rate schedule: constant, then x0.2 after 80% and after 90% of the steps."""
import keras
import tensorflow as tf

DEFAULT_BOUNDARIES = (0.8, 0.9)
DEFAULT_FACTOR = 0.2


@keras.saving.register_keras_serializable(package="tf_pyramid")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`initial_learning_rate * factor**k`, k = number of boundaries the step has reached.

    Boundaries are fractions of `total_steps` (paper A.4: x0.2 after 80% and after 90%).

    Args:
        initial_learning_rate: rate for the first steps.
        total_steps: steps of the whole run (epochs * steps per epoch).
        boundaries: increasing fractions in (0, 1].
        factor: multiplier applied at each boundary.
    """

    def __init__(self, initial_learning_rate, total_steps, boundaries=DEFAULT_BOUNDARIES,
                 factor=DEFAULT_FACTOR):
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)
        self.boundaries = tuple(float(b) for b in boundaries)
        self.factor = float(factor)
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1; got {total_steps!r}.")
        self.check_boundaries(self.boundaries)

    @staticmethod
    def check_boundaries(boundaries):
        """Raises ValueError unless `boundaries` are increasing fractions in (0, 1]."""
        boundaries = [float(b) for b in boundaries]
        if any(not 0.0 < b <= 1.0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(f"boundaries must be increasing fractions in (0, 1]; got "
                             f"{boundaries!r}.")

    def boundary_steps(self):
        """The steps at which the rate drops (the drop applies from that step on)."""
        return [int(round(b * self.total_steps)) for b in self.boundaries]

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        drops = tf.zeros([], tf.float32)
        for boundary in self.boundary_steps():
            drops += tf.cast(step >= boundary, tf.float32)
        return tf.constant(self.initial_learning_rate, tf.float32) * tf.pow(
            tf.constant(self.factor, tf.float32), drops)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "total_steps": self.total_steps, "boundaries": list(self.boundaries),
                "factor": self.factor}
