"""Profile suites: bias, calibration and accuracy by log-likelihood (profiling/loglik.py).

A suite is data plus pure functions (`base.Suite`): a loader that turns a data file into
items (a context, its options and the fields its formula reads), and a `metrics` function
over the scored items. Each suite's module builds one and registers it here; a new suite is
one new module (docs/extending.md, "Add a profile suite").

  stereoset     StereoSet intrasentence: SS, LMS, ICAT (overall and per bias type)
  crows_pairs   CrowS-Pairs: share of pairs whose stereotypical sentence is more likely
  bbq           BBQ, every category: accuracies, s_DIS, s_AMB
  openbookqa, piqa, hellaswag, mmlu    multiple choice: accuracy, ECE (10 equal-mass bins
                and 1 bin), a reliability diagram
"""

from ai_jax.profiling.suites.base import (Item, Loaded, Suite, get, names,  # noqa: F401
                                          register)
from ai_jax.profiling.suites import bbq, bias_pairs, multiple_choice  # noqa: F401,E402
