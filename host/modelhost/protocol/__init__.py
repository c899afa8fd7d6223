"""Wire codecs: KServe V1 and the Open Inference Protocol (V2), bytes in and out."""
