"""Models: the frozen SAM and text encoder, and the trainable proposal generator and ModalCon head."""
