"""Training pieces: EMA and the reproducible random draws (:mod:`.parts`), the loop (:mod:`.loop`) and its
callbacks (:mod:`.callbacks`); :class:`moldiff.train.Trainer` assembles them into one resumable run."""
