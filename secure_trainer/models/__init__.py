"""Models: safe loading (safetensors/diffusers only), single-file conversion, text encoding, LoRA
injection, model-family configs.
"""
