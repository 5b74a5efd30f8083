"""Alpha signals: validated and recorded as span events on the run that produced them."""
