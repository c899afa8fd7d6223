"""Triton's extensions of the Open Inference Protocol that modelhost answers from what it knows: the statistics
extension (``model_stats``, from the server's metrics) and the model configuration (from what a model declares).
Pure: no I/O."""

from typing import Optional

from ..metrics import Duration, ModelStatistics


def model_statistics(name: str, version: Optional[str], figures: ModelStatistics) -> dict:
    """One model's entry of Triton's statistics extension (``model_stats``): from the server's metrics."""

    def duration(measured: Duration) -> dict:
        return {"count": measured.count, "ns": measured.ns}

    return {
        "name": name, "version": version or "", "last_inference": figures.last_inference_ms,
        "inference_count": figures.success.count,
        "execution_count": figures.execution_count,
        "inference_stats": {
            "success": duration(figures.success), "fail": duration(figures.fail), "queue": duration(figures.queue),
            "compute_input": duration(figures.compute_input), "compute_infer": duration(figures.compute_infer),
            "compute_output": duration(figures.compute_output), "cache_hit": duration(Duration(0, 0)),
            "cache_miss": duration(Duration(0, 0)),
        },
        "batch_stats": [],
    }


def model_config(name: str, declared: dict, max_batch_size: int) -> dict:
    """Triton's model configuration, as far as a model declares it: name, platform, batching, inputs, outputs.

    With batching on, Triton's ``dims`` leave out the batch dimension that the V2 metadata's shapes hold.
    """
    batched = max_batch_size if max_batch_size > 1 else 0

    def tensor(described: dict) -> dict:
        shape = list(described.get("shape", []))
        datatype = str(described.get("datatype", ""))
        return {"name": str(described.get("name", "")),
                "data_type": "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}" if datatype else "TYPE_INVALID",
                "dims": shape[1:] if batched and shape else shape,
                **({"optional": True} if described.get("optional") is True else {})}

    return {"name": name, "platform": declared.get("platform", ""), "backend": "modelhost",
            "max_batch_size": batched, "input": [tensor(t) for t in declared.get("inputs", [])],
            "output": [tensor(t) for t in declared.get("outputs", [])]}
