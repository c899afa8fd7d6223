"""Write input.json, the request of KServe's custom-model guide, from a real photograph.

The photograph is scikit-image's ``chelsea`` (a cat), shipped inside the
scikit-image package; scikit-image is needed only to run this script:

    pip install scikit-image
    python sample_alexnet_plugin/make_input_json.py
"""

import base64
import io
import json
from pathlib import Path

from PIL import Image
from skimage import data

# Quality 85 keeps the request small (28 KB of JPEG, 37 KB as base64) with no visible loss.
QUALITY = 85


def main() -> None:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=QUALITY)
    request = {"instances": [{"image": {"b64": base64.b64encode(buffer.getvalue()).decode("ascii")}}]}
    target = Path(__file__).with_name("input.json")
    target.write_text(json.dumps(request))
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
