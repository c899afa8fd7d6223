"""modelhost's LightGBM format: a model saved by LightGBM itself (its text format) served with no code.

Only this declaration is imported by the server; the plugin, and LightGBM
with it, is imported where the model runs.
"""

from modelhost import ModelFormat

# LightGBM's text format holds trees and parameters, no code: a folder's files may pick this format. model.bst is
# KServe's lgbserver's name for it, model.txt LightGBM's own documentation's.
FORMAT = ModelFormat(name="lightgbm", plugin="modelhost_lightgbm.plugin:LightGBMModel", files=("*.bst", "model.txt"))
