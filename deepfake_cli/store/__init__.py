"""What the stages write and read back, and the rules of writing it: feature files (`features`, HDF5),
model and reducer files (`artifacts`, skops with an allowlist), the metadata every model carries
(`model_card`), what a command may write and over what (`outputs`: the guards each stage declares with
`writes`), and what a killed or refused extraction left beside its output (`recovery`)."""
