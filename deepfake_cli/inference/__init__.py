"""The inference core, shaped like clip-retrieval's: reader -> mapper -> writer, driven by a runner.

    reader.py   item -> content hash + backbone input tensor(s), or a skip reason   (ImageReader)
    mapper.py   collated batch -> (B, dim) float32 features on a device            (Mapper, BackboneSpec)
    runner.py   where reader and mapper run; batches in, BatchResults out        (Runner, LocalRunner)
    ray_runner.py  read tasks + restartable model actors on a Ray cluster (`--engine ray`)  (RayRunner)
    engines.py  `--engine NAME` -> a Runner (imports nothing heavy)                (ENGINES, create_runner)
    shards.py   per-batch shard files, run signature, resume, merge into HDF5  (ShardStore, merge)
    embed.py    features for loose files, no store (used by `predict`)             (embed)
    device.py   resolve_device, resolve_workers

Stages (`extract`, `predict`) compose these; a new engine is one more Runner registered in
`engines.ENGINES` and touches none of the others. Import the submodules directly: this package
imports nothing itself, so the registry can be read without loading torch.
"""
