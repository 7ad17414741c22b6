"""Statistics on the records: intervals over seeds or images, paired differences, Holm, the
control comparisons and verdict rules, and rank correlations along a sweep."""
