"""Numbers about scores, free of any file or model format: accuracy with intervals and AUC/AP (`stats`),
score orientation (`scoring`), probability calibration and thresholds (`calibration`), the novelty
reference (`novelty`) and the covariance shrinkage it and LDA share (`shrinkage`)."""
