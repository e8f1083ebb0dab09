"""The build's stages, one module each, in the order :mod:`edgedistill.pipeline` runs them:

data -> teacher -> select -> (per candidate student, see :mod:`.round`) distill -> quantize ->
export -> verify -> bench -> (feedback: measured latency refits the target's model and re-chooses)
-> scratch baseline -> gates -> bundle.

Each stage is a function of typed inputs and the config; a stage that trains or exports keeps its
typed result in the run directory (:mod:`edgedistill.rundir`), so a rerun skips it when its inputs
are unchanged and an interrupted one resumes.
"""
