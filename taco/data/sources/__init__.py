"""Where data sets come from: generated here (`synthetic`) or downloaded (`download`)."""
