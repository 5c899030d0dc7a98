"""The models DTN's own deployment registers (on Base, and on the devnet alike), with their APIs'
specs: what a request's ``call`` encodes and what an answer decodes to.

Stdlib only: read by the configuration (presets) and by commands at start-up.
"""

from __future__ import annotations

from .record import record

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

TEXT_API = "api.system.llm-simpletext"
IMAGE_API = "api.system.llm-simpleimage"


@record(frozen=True)
class ModelSpec:
    """A DTN model: its name, its API, the ABI types of its call and of its answer."""

    name: str
    api: str
    inputs: tuple  # ABI types of ``call``
    output: str  # ABI type of the answer (DIRECT), before any IPFS CID

    @property
    def kind(self) -> str:
        return "image" if self.output == "bytes" else "text"

    @property
    def specs(self) -> str:
        return f"{', '.join(self.inputs)} -> {self.output}"


def _text(name: str) -> ModelSpec:
    return ModelSpec(name, TEXT_API, ("string[]",), "string")


# NOTE: as DTN's deployment module registers them on Base (DTN-FACTS); gpt-4 appears only in
# DTN's tests and its node's sample configuration
DTN_MODELS = (
    _text("model.system.openai-gpt-5-nano"),
    _text("model.system.openai-gpt-5-mini"),
    _text("model.system.openai-gpt-5"),
    ModelSpec("model.system.openai-gpt-image-1", IMAGE_API, ("string[]", "uint64", "uint64"),
              "bytes"),
)
DEFAULT_TEXT_MODEL = "model.system.openai-gpt-5-nano"
DEFAULT_IMAGE_MODEL = "model.system.openai-gpt-image-1"
_BY_NAME = {m.name: m for m in DTN_MODELS}


def spec_of(name: str) -> Optional[ModelSpec]:
    """The known spec of a model name (None for a model this client does not know)."""
    return _BY_NAME.get(name)


def spec_or_text(name: str) -> ModelSpec:
    """The known spec, else a text model's (what every other registered model has been)."""
    return _BY_NAME.get(name) or _text(name)
