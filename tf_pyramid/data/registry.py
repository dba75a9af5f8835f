"""A small name -> function registry for preprocessing ops.

Every op is registered, so that it can be looked up, listed and tested by name (eagerly and inside
`tf.data.Dataset.map`). The ops after the decode are named, as data, in the builder's
`image_ops_after_decode` and MNIST's op list; the decode and the Inception crop, which read the
record's bytes and boxes rather than an image, are called by the builder directly.
"""


class Registry:
    """Maps names to functions; registering a name twice is an error (it would hide an op)."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name):
        """Decorator: `@OPS.register("random_flip")`."""
        def decorate(fn):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered "
                                 f"({self._entries[name].__module__}).")
            self._entries[name] = fn
            return fn
        return decorate

    def get(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"Unknown {self.kind} {name!r}; expected one of "
                             f"{sorted(self._entries)}.") from None

    def names(self):
        return sorted(self._entries)


OPS = Registry("preprocessing op")
register_op = OPS.register
get_op = OPS.get
