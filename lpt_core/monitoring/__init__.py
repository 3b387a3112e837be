"""Label-free monitoring of deployed classifiers (MONITORING_SPEC.md): accuracy estimates and shift
detection for unlabelled batches, from statistics fitted once per model on a labelled reference set.

Papers: ATC, Garg et al., ICLR 2022; DoC, Guillory et al., ICCV 2021; BBSD and BBSE, Lipton et
al., ICML 2018; the BBSD recipe, Rabanser et al., NeurIPS 2019; FDR, Benjamini & Hochberg 1995;
temperature scaling, Guo et al., ICML 2017; design-corrected chi-square, Rao & Scott 1984; LPT's
prompt selection, Dong et al., ICLR 2023.

Use::

    ref = predict_outputs(model, reference_images, device=dev)          # lpt_core.evaluate
    cal = fit_calibration(ref, reference_labels, train_class_counts, pool_size=M)
    cal.save(folder); cal = Calibration.load(folder)
    result = monitor_batch(cal, predict_outputs(model, batch_images, device=dev))
    night = benjamini_hochberg([p for r in results for p in r.pvalues().values()], alpha)

The package is numpy/scipy only; ``lpt_core.evaluate.predict_outputs`` is the torch side.

Cost: ``monitor_batch`` is vectorised over images; its largest part is BBSD's per-class KS
(a sort of the batch and two sorted searches per class, O(C n log N)). 10,000 images x 100
classes with LPT's selection tests, reference 10,000 images: about 50 ms warm on the 2-core CI
machine (BBSD 45 ms), against about 21 s of forward pass for the quickstart LPT there
(474 images/s, BENCHMARKS.md) and about 2 s for ViT-B/16 LPT on the GPU (5,168 images/s). The
first call on a calibration also sorts the reference (KS index) and computes pinv(M), 0.2-0.5 s:
keep one loaded ``Calibration`` per model for a night's batches.
"""

from lpt_core.monitoring.calibration import Calibration, fit_calibration
from lpt_core.monitoring.estimates import ESTIMATORS, Estimate, GroupCalibration, Measured, ReferenceStats
from lpt_core.monitoring.ks import weighted_ks_statistics
from lpt_core.monitoring.label_shift import LabelShiftEstimate
from lpt_core.monitoring.monitor import DETECTORS, DetectorResult, MonitorResult, monitor_batch
from lpt_core.monitoring.multiple import FDRResult, benjamini_hochberg
from lpt_core.monitoring.outputs import SCORES, ModelOutputs

__all__ = [
    "DETECTORS", "ESTIMATORS", "SCORES", "Calibration", "DetectorResult", "Estimate", "FDRResult",
    "GroupCalibration", "LabelShiftEstimate", "Measured", "ModelOutputs", "MonitorResult", "ReferenceStats",
    "benjamini_hochberg", "fit_calibration", "monitor_batch", "weighted_ks_statistics",
]
