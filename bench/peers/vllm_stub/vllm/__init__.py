"""A stand-in for vLLM 0.24.0's OpenAI protocol types, which KServe 0.21 imports: see ../README.md."""
