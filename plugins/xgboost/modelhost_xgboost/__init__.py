"""modelhost's XGBoost format: a model saved by XGBoost itself (JSON or UBJSON) served with no code.

Only this declaration is imported by the server; the plugin, and XGBoost
with it, is imported where the model runs.
"""

from modelhost import ModelFormat

# XGBoost's own formats hold trees and parameters, no code: a folder's files may pick this format.
FORMAT = ModelFormat(name="xgboost", plugin="modelhost_xgboost.plugin:XGBoostModel", files=("*.json", "*.ubj"))
