"""Error analysis: which images a class is wrong on (`errors`), where a model looks
(`saliency`), whether that is on the object (`pointing`), and the figures of each (`figures`).
Plain NumPy on scores, labels, images and boxes: any model family, any backend."""
