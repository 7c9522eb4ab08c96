"""Looking at models rather than running them: FLOP counting (:mod:`.flops`)."""
