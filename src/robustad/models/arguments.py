"""Constructor arguments remembered as plain values, so a detector built in plain Python (no
Hydra config) still writes checkpoints that say how to rebuild it."""

from __future__ import annotations

import functools
import inspect
from typing import Any


class RecordsArguments:
    """Keeps the arguments of the constructor that built the object in `init_arguments`
    (defaults filled in); the most derived class's constructor is the one recorded."""

    init_arguments: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__dict__["__init__"]
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Any, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self).__init__ is recording_init:  # the outermost constructor
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self.init_arguments = dict(list(bound.arguments.items())[1:])

        cls.__init__ = recording_init
