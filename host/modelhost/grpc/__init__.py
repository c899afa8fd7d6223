"""The gRPC front end: the Open Inference Protocol's GRPCInferenceService over the host's inference call."""
