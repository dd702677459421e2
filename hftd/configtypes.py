"""The constrained types config Structs share.

Here rather than in hftd.config because hftd.config imports the strategy kinds'
own config Structs (hftd.strategy.kinds), which use them: a module of its own
keeps that import free of cycles.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0)]
Micros = Annotated[float, msgspec.Meta(ge=0.0)]
Millis = Annotated[float, msgspec.Meta(ge=0.0)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=8, pattern=r"^[A-Z][A-Z0-9.]*$")]
Alpha6 = Annotated[str, msgspec.Meta(min_length=1, max_length=6, pattern=r"^[ -~]+$")]
Alpha10 = Annotated[str, msgspec.Meta(min_length=1, max_length=10, pattern=r"^[ -~]+$")]
PriceText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]{1,4})?$")]
