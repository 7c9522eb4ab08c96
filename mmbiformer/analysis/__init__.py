"""Looking at models rather than running them: FLOP counting (:mod:`.flops`) and
where BRA routes (:mod:`.routing`, pictures in :mod:`.routing_figure`)."""
