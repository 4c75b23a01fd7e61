"""Sources: each side of a comparison.

A *source* yields, per probe batch, what it can: a live module (:mod:`.module`) gives full
logits and block outputs; a snapshot (:mod:`..snapshot`) gives the recorded baseline's top-k,
tail information, target log-probabilities and block sketches.
"""
