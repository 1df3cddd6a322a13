"""After a run: review decisions, replay, review exports, the HTML report, evaluation against gold labels."""
