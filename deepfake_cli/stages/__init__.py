"""The pipeline's stages, one module each: `extract` → `reduce` → `train` (or `finetune`) → `evaluate` /
`predict`, and `audit`. A stage reads and writes through `deepfake_cli.store`, declares what it writes
(`deepfake_cli.store.outputs.writes`) and never imports another stage; `deepfake_cli.api` and the CLI
call them. `splits` (the content-hash split every stage agrees on) and `prediction_checks` (the
warnings a predict run prints) serve the stages alone."""
