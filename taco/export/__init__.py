"""A trained model as a file a device runs: ONNX or LiteRT, float32, float16 or int8
(`convert`), a JSON beside it that says how to feed it (`sidecar`), and the runtimes that run
it with NumPy alone, without Keras or TensorFlow (`runtime`)."""
