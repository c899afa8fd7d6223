"""modelhost: serve pluggy model plugins over KServe's V1 and V2 protocols."""

__version__ = "0.1.0"

from .errors import InvalidInput  # noqa: E402
from .formats import ModelFormat  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .predictor import PredictorClient  # noqa: E402
from .request import Generation, Headers, InferenceRequest, Piece, Response  # noqa: E402
from .stepping import END  # noqa: E402

__all__ = ["hookimpl", "END", "Generation", "Headers", "InferenceRequest", "InvalidInput", "ModelFormat", "Piece",
           "PredictorClient", "Response", "__version__"]
