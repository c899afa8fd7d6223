"""inference.proto and its compiled form in grpc_descriptor.py agree; run as a script, it writes the latter."""

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from modelhost.protocol import grpc_descriptor

PROTOCOL = Path(__file__).parent.parent / "host" / "modelhost" / "protocol"


def compiled() -> bytes:
    """inference.proto compiled by protoc (grpcio-tools, a test dependency): its FileDescriptorProto."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "inference.desc"
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOCOL}", f"--descriptor_set_out={out}",
                        "inference.proto"], check=True)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0].SerializeToString()


def as_module(data: bytes) -> str:
    lines = "\n".join(f"    {data[start:start + 90]!r}" for start in range(0, len(data), 90))
    return f'''"""inference.proto, compiled: its FileDescriptorProto, serialized. Generated; do not edit.

Regenerate with ``python tests/test_grpc_proto.py`` after changing inference.proto.
"""

FILE = (
{lines}
)
'''


def test_the_compiled_descriptor_is_inference_proto_as_it_is_now():
    assert grpc_descriptor.FILE == compiled(), "run: python tests/test_grpc_proto.py"


if __name__ == "__main__":
    (PROTOCOL / "grpc_descriptor.py").write_text(as_module(compiled()))
