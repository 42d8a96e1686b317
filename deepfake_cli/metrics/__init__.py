"""Numbers about scores, free of any file or model format: accuracy with intervals and AUC/AP (`stats`),
score orientation (`scoring`), probability calibration and thresholds (`calibration`), the novelty
reference (`novelty`), the covariance shrinkage it and LDA share (`shrinkage`), operating points
(`operating`) and where evidence maps put their evidence across images (`evidence_location`)."""
