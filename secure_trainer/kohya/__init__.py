"""Everything that speaks Kohya's language: the option table, flag/TOML config, dataset config,
LoRA metadata and file export.
"""
