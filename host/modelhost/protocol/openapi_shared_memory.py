"""The OpenAPI paths and schemas of Triton's shared-memory extension (``http.shared_memory_routes``)."""

from .openapi_parts import INTEGER, STRING, array_of, error_responses, object_of, ref, response

SYSTEM, CUDA, REGION = "/v2/systemsharedmemory", "/v2/cudasharedmemory", "/region/{name}"
ERRORS = {400: "Malformed request, a region not registered or an object that cannot hold it, shared memory "
               "not enabled for this client, or (CUDA) not supported here",
          413: "The request body is larger than --max_buffer_size"}


def paths() -> dict:
    def operation(verb: str, operation_id: str, summary: str, answer: str, request: str = "") -> dict:
        body = {"requestBody": {"required": True, "content": {"application/json": {"schema": ref(request)}}}} \
            if request else {}
        return {verb: {"operationId": operation_id, "summary": summary, **body,
                       "responses": {"200": response("OK", ref(answer)), **error_responses([400, 413], ERRORS)}}}

    cuda = "CUDA shared memory: not supported on this server (400)"
    return {
        f"{SYSTEM}/status": operation("get", "systemSharedMemoryStatus", "Every registered region",
                                      "SystemSharedMemoryStatusResponse"),
        f"{SYSTEM}{REGION}/status": operation("get", "systemSharedMemoryRegionStatus", "One registered region",
                                              "SystemSharedMemoryStatusResponse"),
        f"{SYSTEM}{REGION}/register": operation(
            "post", "systemSharedMemoryRegister", "Register a region of a shared memory object under /dev/shm",
            "SharedMemoryChangeResponse", "SystemSharedMemoryRegisterRequest"),
        f"{SYSTEM}/unregister": operation("post", "systemSharedMemoryUnregisterAll", "Unregister every region",
                                          "SharedMemoryChangeResponse"),
        f"{SYSTEM}{REGION}/unregister": operation("post", "systemSharedMemoryUnregister", "Unregister a region",
                                                  "SharedMemoryChangeResponse"),
        f"{CUDA}/status": operation("get", "cudaSharedMemoryStatus", cuda, "ErrorResponse"),
        f"{CUDA}{REGION}/status": operation("get", "cudaSharedMemoryRegionStatus", cuda, "ErrorResponse"),
        f"{CUDA}{REGION}/register": operation("post", "cudaSharedMemoryRegister", cuda, "ErrorResponse"),
        f"{CUDA}/unregister": operation("post", "cudaSharedMemoryUnregisterAll", cuda, "ErrorResponse"),
        f"{CUDA}{REGION}/unregister": operation("post", "cudaSharedMemoryUnregister", cuda, "ErrorResponse"),
    }


def schemas() -> dict:
    return {
        "SystemSharedMemoryStatusResponse": array_of(object_of(
            ["name", "key", "offset", "byte_size"], name=STRING, key=STRING, offset=INTEGER, byte_size=INTEGER)),
        "SystemSharedMemoryRegisterRequest": object_of(
            ["key", "byte_size"], key=STRING, offset={"type": "integer", "minimum": 0},
            byte_size={"type": "integer", "minimum": 0}),
        "SharedMemoryChangeResponse": object_of([]),
    }


def tensor_parameters() -> dict:
    """The parameters that put an input or requested output in a region."""
    return {"shared_memory_region": STRING, "shared_memory_offset": {"type": "integer", "minimum": 0},
            "shared_memory_byte_size": {"type": "integer", "minimum": 0}}
