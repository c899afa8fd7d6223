"""modelhost's scikit-learn format: a pickled estimator or pipeline (joblib or pickle) served with no code.

Only this declaration is imported by the server; the plugin, and scikit-learn
with it, is imported where the model runs.
"""

from modelhost import ModelFormat

# Unpickling runs code from the file: the command line must name or allow this format (formats.py).
FORMAT = ModelFormat(name="sklearn", plugin="modelhost_sklearn.plugin:SKLearnModel",
                     files=("*.joblib", "*.pkl", "*.pickle"), runs_code=True)
