"""Make a model smaller or move it between formats: llama.cpp quantization, GGUF → HF → ONNX, ONNX quantization."""
