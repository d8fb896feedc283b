"""The figure registry: every figure of the report, in report order.

    from pipeline import figures
    spec = figures.spec("confusion_matrix")      # title, caption, alt text, stage, section
    fig = figures.draw_function(spec.id)(cm, labels)

One table says which stage draws a figure (its PNG is ``<stage figure folder>/<id>.png``),
with which function, where the report shows it and what its caption teaches. Stages draw
what the table lists; the report embeds, section by section and in this order, the
figures it finds. Importing this module imports no plotting code: the report stage does
not draw, so ``draw`` is a ``"module:function"`` name resolved only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGES = ("evaluate", "explain", "visualize")
# The report's sections, in page order: (id, title). Summary and configuration hold no figures.
SECTIONS = (
    ("summary", "Summary"),
    ("network", "The network: structure and weights"),
    ("training", "Training"),
    ("evaluation", "Evaluation on the test set"),
    ("explanation", "Explanation (SHAP)"),
    ("checks", "Checking the explanation: random weights and a surrogate tree"),
    ("activations", "Inside the network: activations"),
    ("errors", "The worst mistakes"),
    ("configuration", "Configuration"),
)


@dataclass(frozen=True)
class FigureSpec:
    id: str
    stage: str  # "evaluate" | "explain" | "visualize": whose figure folder holds <id>.png
    section: str  # the report section it appears in (an id of SECTIONS)
    title: str
    caption: str  # teaches the reader how to read the figure
    alt: str
    draw: str  # "module:function" returning a matplotlib Figure; see draw_function
    # The caption when the task is regression (pipeline.task), where the figure is drawn for both
    # tasks and the classification caption speaks of classes; "" = the same caption for both.
    regression_caption: str = ""
    regression_title: str = ""

    def caption_for(self, task: str) -> str:
        return self.regression_caption if task == "regression" and self.regression_caption else self.caption

    def title_for(self, task: str) -> str:
        return self.regression_title if task == "regression" and self.regression_title else self.title


FIGURES: tuple[FigureSpec, ...] = (
    # network
    FigureSpec(
        id="architecture",
        stage="visualize",
        section="network",
        title="Architecture",
        caption=(
            "The network drawn as the data flows through it, left to right. Each block is one layer: its "
            "type, its sizes (inputs → outputs) and how many weights and biases it learns. A Linear layer "
            "multiplies its input by a weight matrix and adds a bias; the activation after it bends the "
            "result, which is what lets stacked layers learn more than one straight-line rule; Dropout "
            "switches off a random share of units during training only; softmax turns the last layer's "
            "scores into class probabilities. Taller blocks are wider layers."
        ),
        alt="Block diagram of the network's layers with their types, sizes and parameter counts.",
        draw="pipeline.plots.network:architecture",
        regression_caption=(
            "The network drawn as the data flows through it, left to right. Each block is one layer: its "
            "type, its sizes (inputs → outputs) and how many weights and biases it learns. A Linear layer "
            "multiplies its input by a weight matrix and adds a bias; the activation after it bends the "
            "result, which is what lets stacked layers learn more than one straight-line rule; Dropout "
            "switches off a random share of units during training only. The last Linear layer has a single "
            "output, taken as it is: that one number is the prediction, in the target's own units. Taller "
            "blocks are wider layers."
        ),
    ),
    FigureSpec(
        id="activation_functions",
        stage="visualize",
        section="network",
        title="Activation functions and their derivatives",
        caption=(
            "The solid line is the activation function each hidden unit applies to its input; the dashed "
            "line is its slope (derivative), which scales the gradient that flows back through the unit "
            "during training. Where the slope is 0 (ReLU left of 0, the flat ends of sigmoid and tanh) a "
            "unit passes back no gradient and stops learning. The grey histogram behind shows where the "
            "hidden units' inputs actually fall on the test data: mass in a flat region warns of dead or "
            "saturated units."
        ),
        alt=(
            "Line plot of each activation function and its derivative over a histogram of its test-set "
            "inputs."
        ),
        draw="pipeline.plots.network:activation_functions",
    ),
    FigureSpec(
        id="weight_distributions",
        stage="visualize",
        section="network",
        title="Weight and bias distributions per layer",
        caption=(
            "Each violin shows how the learned weights (left) or biases (right) of one layer are spread: the"
            " width at a height is how many parameters have that value, the middle bar is the median. "
            "Weights centred on 0 with a modest spread are healthy; a few very large weights, or a spread "
            "that differs wildly between layers, point to poor scaling or too little regularisation."
        ),
        alt="Violin plots of the weights and of the biases of each linear layer.",
        draw="pipeline.plots.network:weight_distributions",
    ),
    FigureSpec(
        id="first_layer_images",
        stage="visualize",
        section="network",
        title="What each first-layer unit looks for",
        caption=(
            "Each small square is one hidden unit of the first layer (units numbered row by row: the label "
            "on the left is the first unit of the row, +k along it): its incoming weight from every input "
            "pixel, drawn at that pixel's place. Red pixels excite the unit when they are dark in the input,"
            " blue pixels inhibit it; white means the pixel is ignored. Stroke-like red/blue patterns are "
            "the features the network learned to detect; squares that still look like random noise belong to"
            " units that learned little."
        ),
        alt="Grid of images, one per first-layer unit, of its incoming weights in the input image's shape.",
        draw="pipeline.plots.network:unit_weight_images",
    ),
    FigureSpec(
        id="first_layer_features",
        stage="visualize",
        section="network",
        title="First-layer weights per input feature",
        caption=(
            "Each row is one hidden unit of the first layer and each column an input feature; the colour is "
            "the weight from the feature to the unit (red positive, blue negative, white near 0). A column "
            "that stays white is a feature the network hardly uses; strong, varied columns are the features "
            "it builds on."
        ),
        alt="Heatmap of first-layer weights, units by input features.",
        draw="pipeline.plots.network:unit_weight_heatmap",
    ),
    FigureSpec(
        id="conv_filters",
        stage="visualize",
        section="network",
        title="The first convolution's filters",
        caption=(
            "A convolutional layer slides each small filter over the image and, at every position, adds up "
            "the pixels weighted by the filter: the output is large where the image looks like the filter. "
            "Each tile is one filter of the first layer (red weights add a pixel's ink, blue subtract it). "
            "Trained filters often look like little edge or stroke detectors: a red stripe beside a blue "
            "one responds to an edge in that direction. Filters that stayed noisy learned little."
        ),
        alt="The first convolutional layer's filters drawn as small red-blue images.",
        draw="pipeline.plots.conv:filters",
    ),
    FigureSpec(
        id="weight_history",
        stage="visualize",
        section="network",
        title="How the weights moved during training",
        caption=(
            "For each linear layer, the spread of its weights after each epoch (epoch 0 is the random "
            "initialisation): the dark band holds the middle half of the weights, the light band 90% of "
            "them, the line is the median. Bands that widen show the layer learning; bands that stop "
            "changing show it has settled; a band that keeps growing fast can signal instability. The dotted"
            " line marks the epoch whose weights were kept."
        ),
        alt="Quantile bands of each layer's weights over the training epochs.",
        draw="pipeline.plots.network:weight_history",
    ),
    # training
    FigureSpec(
        id="training_curves",
        stage="evaluate",
        section="training",
        title="Training curves",
        caption=(
            "Loss (left) and accuracy (right) after each epoch, on the training data and on the validation "
            "data the network never trains on. Both losses falling together means the network is learning; a"
            " validation loss that rises while the training loss keeps falling means it has begun to "
            "memorise (overfit). The dotted line marks the epoch whose weights were kept."
        ),
        alt="Line charts of training and validation loss and accuracy per epoch.",
        draw="pipeline.plots.evaluation:training_curves",
        regression_caption=(
            "Loss (left) and RMSE (right) after each epoch, on the training data and on the validation "
            "data the network never trains on. The loss is computed on the target scaled to mean 0 and "
            "spread 1 on the training split (for the default MSE loss, 1.0 is no better than predicting the"
            " average); the RMSE is the typical error in the target's own units. Both falling together means"
            " the network is learning; a validation curve that rises while the training one keeps falling "
            "means it has begun to memorise (overfit). The dotted line marks the epoch whose weights were "
            "kept."
        ),
    ),
    # evaluation
    FigureSpec(
        id="gradient_norms",
        stage="visualize",
        section="training",
        title="Gradient size per layer (backpropagation at work)",
        caption=(
            "Backpropagation sends the error from the output back through the layers; each weight moves "
            "in proportion to its gradient. Each line is one layer (darkest at the input), its weight "
            "gradient's size averaged over an epoch's steps, on a log scale. Healthy training keeps the "
            "lines within an order of magnitude or two of each other and lets them drift down as the loss "
            "falls. Lines that sit lower and lower toward the input show vanishing gradients: the early "
            "layers barely learn (try model.activation=sigmoid with model.hidden_sizes=[64,64,64,64]: the "
            "sigmoid's slope is at most 0.25, so every layer shrinks the gradient again). Lines that climb "
            "epoch after epoch show exploding gradients: lower the learning rate or clip the gradients "
            "(+trainer.gradient_clip_val=1.0)."
        ),
        alt="Mean weight-gradient norm of each layer per epoch, on a log scale.",
        draw="pipeline.plots.network:gradient_norms",
    ),
    FigureSpec(
        id="loss_line",
        stage="visualize",
        section="training",
        title="The loss along the way: from the initial to the kept weights",
        caption=(
            "Training moved millions of numbers at once; this figure looks at one straight line through "
            "that space. At α = 0 the network has its random initial weights, at α = 1 the weights that "
            "were kept, and in between every weight is the same mix of the two (Goodfellow, Vinyals and "
            "Saxe, 2015); α below 0 and above 1 go past either end. A curve that falls smoothly and "
            "monotonically to α = 1 says the optimizer had an easy path with no barrier to cross; a bump "
            "on the way shows a barrier it went around; a minimum at α = 1 that rises beyond shows the "
            "kept weights sit in a valley. A gap between the train and validation curves near α = 1 is "
            "the generalisation gap."
        ),
        alt="Train and validation loss on the line from the initial to the kept weights.",
        draw="pipeline.plots.network:loss_line",
        regression_caption=(
            "Training moved all the weights at once; this figure looks at one straight line through "
            "that space. At α = 0 the network has its random initial weights, at α = 1 the weights that "
            "were kept, and in between every weight is the same mix of the two (Goodfellow, Vinyals and "
            "Saxe, 2015); α below 0 and above 1 go past either end. The loss is the one trained on: by "
            "default the mean squared error of the target scaled to mean 0 and standard deviation 1 on the "
            "training split, so 1 is what always predicting the mean would score. A curve that falls "
            "smoothly to α = 1 says the optimizer had an easy path with no barrier to cross; a bump on the "
            "way shows a barrier it went around; a minimum at α = 1 that rises beyond shows the kept "
            "weights sit in a valley. A gap between the train and validation curves near α = 1 is the "
            "generalisation gap."
        ),
    ),
    FigureSpec(
        id="predicted_vs_actual",
        stage="evaluate",
        section="evaluation",
        title="Predicted against actual",
        caption=(
            "Each dot is one test sample: its true value across, the network's prediction up. A perfect "
            "model puts every dot on the dashed diagonal; the vertical distance from a dot to the diagonal "
            "is that sample's error, in the target's own units. RMSE is the typical size of that distance "
            "(large errors count more), R² the share of the target's spread the network explains (1 is "
            "perfect, 0 is no better than always predicting the average). Dots that flatten toward a "
            "horizontal line mean the network shrinks its predictions toward the mean."
        ),
        alt="Scatter of predicted against actual target values on the test set, with the diagonal.",
        draw="pipeline.plots.evaluation:predicted_vs_actual",
    ),
    FigureSpec(
        id="residuals_vs_predicted",
        stage="evaluate",
        section="evaluation",
        title="Residuals against the prediction",
        caption=(
            "The residual is actual minus predicted: above 0 the network predicted too little, below 0 too "
            "much. A good fit leaves a flat, even band around 0 whatever the prediction, and the red running"
            " median stays on 0. A median that slopes shows a bias the network did not learn (too low at one"
            " end, too high at the other); a band that widens to one side (a funnel) means the errors grow "
            "with the size of the prediction, so one RMSE does not describe every sample."
        ),
        alt="Scatter of residuals against predicted values with a running median.",
        draw="pipeline.plots.evaluation:residuals_vs_predicted",
    ),
    FigureSpec(
        id="residual_distribution",
        stage="evaluate",
        section="evaluation",
        title="How the errors are spread",
        caption=(
            "A histogram of the test residuals (actual minus predicted) in the target's units, with a "
            "normal curve of the same mean and spread. Centred on 0 means no systematic bias (the dotted "
            "line is the mean residual); a long tail on one side shows a group of samples the network "
            "gets badly wrong, worth looking at one by one; a shape much narrower than the curve with a few "
            "far-out residuals means most predictions are better than the RMSE suggests."
        ),
        alt="Histogram of test residuals with a normal curve of the same mean and spread.",
        draw="pipeline.plots.evaluation:residual_distribution",
    ),
    FigureSpec(
        id="confusion_matrix",
        stage="evaluate",
        section="evaluation",
        title="Confusion matrix",
        caption=(
            "Each row is a true class and each column the class the network predicted; the number in a cell "
            "counts test samples. Counts on the diagonal are correct answers; any count off the diagonal is "
            "a mistake, and large ones show which classes the network mixes up."
        ),
        alt="Heatmap of test-set counts of true class against predicted class.",
        draw="pipeline.plots.evaluation:confusion_matrix",
    ),
    FigureSpec(
        id="per_class",
        stage="evaluate",
        section="evaluation",
        title="Precision, recall and F1 per class",
        caption=(
            "Precision: of the samples predicted as this class, the share that truly are. Recall: of the "
            "samples of this class, the share found. F1 is their harmonic mean. A short bar singles out a "
            "class the network finds hard."
        ),
        alt="Bar chart of precision, recall and F1 for each class.",
        draw="pipeline.plots.evaluation:per_class_scores",
    ),
    FigureSpec(
        id="reliability",
        stage="evaluate",
        section="evaluation",
        title="Calibration (reliability diagram)",
        caption=(
            "Test samples are grouped by the network's confidence in its answer; each point compares that "
            "confidence with how often the answer was right. Points on the diagonal mean the confidence can "
            "be taken at face value; points below it mean over-confidence. ECE is the average gap."
        ),
        alt="Scatter of accuracy against mean confidence per confidence bin, with the diagonal.",
        draw="pipeline.plots.evaluation:reliability_diagram",
    ),
    # explanation
    FigureSpec(
        id="class_importance",
        stage="explain",
        section="explanation",
        title="What each class looks at (mean |SHAP| per pixel)",
        caption=(
            "For each class, the average size of each pixel's contribution to that class's score over the "
            "explained test samples. Bright pixels are the ones the network relies on to recognise or rule "
            "out the class; dark pixels barely matter."
        ),
        alt="Grid of heatmaps, one per class, of mean absolute SHAP value per input pixel.",
        draw="pipeline.plots.attribution:class_importance_maps",
        regression_title="What the prediction looks at (mean |SHAP| per pixel)",
        regression_caption=(
            "The average size of each pixel's contribution to the network's prediction over the explained "
            "test samples, in the target's units. Bright pixels are the ones that move the predicted value "
            "most, up or down; dark pixels barely matter."
        ),
    ),
    FigureSpec(
        id="examples_correct",
        stage="explain",
        section="explanation",
        title="Correct predictions explained",
        caption=(
            "Top row: correctly classified test images with their true and predicted labels. Bottom row: the"
            " SHAP map for the predicted class over the faint image; red pixels pushed the network towards "
            "its answer, blue pixels against it. A sensible explanation lights up the strokes that make the "
            "digit what it is (the loop of a 6, the bar of a 7) rather than empty background."
        ),
        alt="Correctly classified test images with their SHAP attribution maps for the predicted class.",
        draw="pipeline.plots.attribution:example_maps",
    ),
    FigureSpec(
        id="examples_wrong",
        stage="explain",
        section="explanation",
        title="Mistakes explained",
        caption=(
            "The same view for test images the network got wrong. The map shows which pixels made it choose "
            "the wrong class: red where the image looked like the predicted class to the network, blue where"
            " it spoke against it. Comparing with the true label often shows the stroke that misled it."
        ),
        alt="Misclassified test images with their SHAP attribution maps for the (wrong) predicted class.",
        draw="pipeline.plots.attribution:example_maps",
    ),
    FigureSpec(
        id="beeswarm",
        stage="explain",
        section="explanation",
        title="How each feature pushes each class (beeswarm)",
        caption=(
            "One panel per class. Each row is a feature (most important at the top) and each dot one "
            "explained sample: the dot's horizontal position is that feature's SHAP value for the class "
            "(right raises the class's score, left lowers it) and its colour the feature's value (red high, "
            "blue low). Red dots on the right mean that high values of the feature argue for the class; a "
            "wide spread means the feature matters a lot for some samples."
        ),
        alt=(
            "Beeswarm plots of per-sample SHAP values per feature, coloured by feature value, one per class."
        ),
        draw="pipeline.plots.attribution:beeswarm",
        regression_title="How each feature pushes the prediction (beeswarm)",
        regression_caption=(
            "Each row is a feature (most important at the top) and each dot one explained sample: the dot's "
            "horizontal position is that feature's SHAP value, how far it moved this sample's prediction "
            "away from the average prediction, in the target's units (right raises the predicted value, "
            "left lowers it), and its colour the feature's value (red high, blue low). Red dots on the right "
            "mean that high values of the feature raise the prediction; a wide spread means the feature "
            "matters a lot for some samples."
        ),
    ),
    FigureSpec(
        id="feature_importance",
        stage="explain",
        section="explanation",
        title="Global feature importance",
        caption=(
            "Input features ranked by their mean absolute SHAP value over the explained samples, summed over"
            " the classes: the features whose values move the network's outputs the most. Each bar is split "
            "by class, so a bar dominated by one colour belongs to a feature that matters mainly for that "
            "class."
        ),
        alt="Horizontal bar chart of the most important input features, stacked by class.",
        draw="pipeline.plots.attribution:feature_importance_bars",
        regression_caption=(
            "Input features ranked by their mean absolute SHAP value over the explained samples: how far, "
            "on average and in the target's units, each feature moves the network's prediction away from "
            "the average prediction. The longest bars are the features the prediction depends on most."
        ),
    ),
    FigureSpec(
        id="waterfall",
        stage="explain",
        section="explanation",
        title="Individual predictions explained (waterfall)",
        caption=(
            "Each panel explains one test sample (mistakes first). It starts at the base value, the "
            "network's average score for the predicted class over the background data (dashed line), and "
            "adds the features' contributions one by one, largest first: red bars push the score up, blue "
            "bars down, and the remaining features are lumped into one bar. The bars end at the network's "
            "actual score for this sample (solid line). The labels give each feature's value."
        ),
        alt="Waterfall charts of the largest feature contributions for selected test samples.",
        draw="pipeline.plots.attribution:waterfalls",
        regression_caption=(
            "Each panel explains one test sample (the largest errors first, then the closest predictions), "
            "with its true and predicted value. It starts at the base value, the network's average "
            "prediction over the background data (dashed line), and adds the features' contributions one by"
            " one, largest first, in the target's units: red bars raise the prediction, blue bars lower it, "
            "and the remaining features are lumped into one bar. The bars end at the network's prediction "
            "for this sample (solid line). The labels give each feature's value."
        ),
    ),
    FigureSpec(
        id="faithfulness",
        stage="explain",
        section="explanation",
        title="Faithfulness: does removing the important features hurt?",
        caption=(
            "Accuracy on the explained samples as more and more of each sample's features are replaced by "
            "their average (the background mean), either in the order the explanation ranks them (largest "
            "|SHAP| for the predicted class first, red) or in random order (grey, mean of several orders "
            "with a band of one standard deviation). If the explanation is faithful, removing its top "
            "features destroys the prediction much faster than removing random ones, so the red curve falls "
            "well below the grey one; the shaded area between them is the faithfulness area (0: no better "
            "than chance)."
        ),
        alt="Accuracy against fraction of features removed, in attribution order and in random order.",
        draw="pipeline.plots.attribution:faithfulness_curves",
        regression_title="Faithfulness: does removing the important features raise the error?",
        regression_caption=(
            "The root mean squared error of the prediction on the explained samples, in the target's units, "
            "as more and more of each sample's features are replaced by their average (the background "
            "mean), either in the order the explanation ranks them (largest |SHAP| first, red) or in random "
            "order (grey, mean of several orders with a band of one standard deviation). If the explanation "
            "is faithful, removing its top features spoils the prediction much faster than removing random "
            "ones, so the red curve rises well above the grey one; the shaded area between them is the "
            "faithfulness area (reported in the target's units and divided by the targets' standard "
            "deviation; 0: no better than chance)."
        ),
    ),
    FigureSpec(
        id="ig_agreement",
        stage="explain",
        section="explanation",
        title="Agreement with a second method (Integrated Gradients)",
        caption=(
            "For each explained sample, the Spearman rank correlation between the SHAP attributions and "
            "those of Integrated Gradients (a different method, computed with Captum from the same baseline)"
            " for the predicted class: 1 means both methods rank the features identically, 0 unrelated, -1 "
            "reversed. Mass near 1 means the explanation does not depend much on the method chosen; a wide "
            "spread means that for some samples the two methods tell different stories."
        ),
        alt="Histogram of per-sample rank correlations between SHAP and Integrated Gradients attributions.",
        draw="pipeline.plots.attribution:rank_agreement_hist",
        regression_caption=(
            "For each explained sample, the Spearman rank correlation between the SHAP attributions of the "
            "prediction and those of Integrated Gradients (a different method, computed with Captum from the"
            " same baseline): 1 means both methods rank the features identically, 0 unrelated, -1 reversed. "
            "Mass near 1 means the explanation does not depend much on the method chosen; a wide spread means"
            " that for some samples the two methods tell different stories."
        ),
    ),
    # checks
    FigureSpec(
        id="sanity_curve",
        stage="explain",
        section="checks",
        title="Sanity check: the attributions as the weights are made random",
        caption=(
            "Adebayo et al. (2018) showed that some explanation methods draw nearly the same maps for a "
            "network whose weights are random: such maps describe the input, not what the network learned. "
            "Left: the layers are re-initialised one more at a time, from the output back to the input, and "
            "the same samples explained again; each line is the median similarity to the trained network's "
            "attributions (shaded: the middle half of the samples), as the rank correlation of |attribution| "
            "(blue), the same with signs (purple) and, for images, the SSIM of the maps (orange). DeepSHAP's "
            "sizes grow with how far a feature is from the background whatever the weights, so blue can stay "
            "high while purple falls: the signs are the network's, the sizes partly the input's. A "
            "trustworthy explanation falls towards 0 as soon as the "
            "layers that matter are random; one that stays above the dashed threshold with every layer random"
            " fails the check. Right: each layer randomised alone, the others as trained: a layer whose bar "
            "stays near 1 is one the explanation does not depend on."
        ),
        alt="Line chart of attribution similarity against the layers randomised, and bars per layer.",
        draw="pipeline.plots.checks:sanity_curve",
    ),
    FigureSpec(
        id="sanity_maps",
        stage="explain",
        section="checks",
        title="The same explanations with random weights",
        caption=(
            "Each row is one explained test image; the first column is its attribution map for the predicted "
            "class on the trained network, and each further column the map after one more layer (named above "
            "it) was re-initialised, from the output back. Maps that keep the digit's shape to the last "
            "column show edges of the input whatever the weights; maps that dissolve into noise depend on the"
            " network."
        ),
        alt="Grid of attribution maps: rows are images, columns are randomisation steps.",
        draw="pipeline.plots.checks:sanity_maps",
    ),
    FigureSpec(
        id="surrogate_fidelity",
        stage="explain",
        section="checks",
        title="A decision tree that imitates the network: fidelity against depth",
        caption=(
            "A decision tree is fitted to the classes the network predicts on the training inputs (the "
            "network is the teacher, not the labels), at each depth. Green: its fidelity, the share of test "
            "samples where tree and network agree; grey: the tree's own accuracy against the true labels; "
            "dotted: the network's accuracy. The dashed line marks the depth chosen, the smallest within one "
            "point of the best fidelity. A high fidelity at a small depth means a few threshold rules capture"
            " most of what the network does; a low one that the network combines its inputs in ways no small "
            "tree can."
        ),
        alt="Line chart of surrogate tree fidelity and accuracy against tree depth.",
        draw="pipeline.plots.checks:surrogate_fidelity",
        regression_caption=(
            "A regression tree is fitted to the values the network predicts on the training inputs (the "
            "network is the teacher, not the targets), at each depth. Green: its fidelity, the R² of the "
            "tree's predictions to the network's on the test samples (1: the tree reproduces the network); "
            "grey: the tree's own R² against the true targets; dotted: the network's R². The dashed line "
            "marks the depth chosen, the smallest within 0.01 of the best fidelity. A high fidelity at a "
            "small depth means a few threshold rules capture most of what the network does; a low one that "
            "the network combines its inputs in ways no small tree can."
        ),
    ),
    FigureSpec(
        id="surrogate_tree",
        stage="explain",
        section="checks",
        title="The surrogate tree",
        caption=(
            "The chosen tree's first three levels. Each box is a question about one input feature (true goes "
            "left), the share of training samples that reach it and, coloured by it, the class the network "
            "gives most of them. For images, the right panel marks the pixels the tree asks about, numbered "
            "from the root, over the mean image: these are the places where the network's decisions split "
            "most cleanly."
        ),
        alt="Decision tree diagram of the surrogate model, with its split pixels marked on the image grid.",
        draw="pipeline.plots.checks:surrogate_tree",
        regression_caption=(
            "The chosen regression tree's first three levels. Each box is a question about one input feature"
            " (true goes left), the share of training samples that reach it and the average value the "
            "network predicts for them, coloured from low (blue) to high (red). Following a path from the "
            "root reads as a rule: for samples like these, the network predicts about this much."
        ),
    ),
    FigureSpec(
        id="surrogate_classes",
        stage="explain",
        section="checks",
        title="Where the tree cannot follow the network",
        caption=(
            "For each class the network predicted, the share of those test samples on which the chosen tree "
            "agrees with it (green 90% and above, orange 70-90%, red below). A low bar marks a class the "
            "network recognises by something a small set of threshold rules on single features cannot "
            "express."
        ),
        alt="Bar chart of surrogate fidelity per predicted class.",
        draw="pipeline.plots.checks:surrogate_classes",
    ),
    # activations
    FigureSpec(
        id="activation_distributions",
        stage="visualize",
        section="activations",
        title="Activations on the test set",
        caption=(
            "Top: every output value of each hidden layer over all test samples (log-scaled counts). Bottom:"
            " one count per unit: for ReLU, the share of test samples on which the unit is active (output > "
            "0); a unit at 0 never fires and is dead. For sigmoid/tanh, the share of samples on which the "
            "unit sits at the flat end of its curve; units right of the dashed line are saturated. Dead and "
            "saturated units waste capacity: they pass no gradient and carry no information about the input."
        ),
        alt=(
            "Histograms of hidden-layer activations and of each unit's share of active or saturated samples."
        ),
        draw="pipeline.plots.activations:activation_distributions",
    ),
    FigureSpec(
        id="class_activations",
        stage="visualize",
        section="activations",
        title="Mean activation of each hidden unit per class",
        caption=(
            "Each column is one hidden unit and each row a true class; the colour is the unit's average "
            "output on the test samples of that class. Units are grouped by the class they respond to most, "
            "so a staircase of bright blocks means units have specialised in classes; a column bright for "
            "several classes is a unit shared between them (often classes the network confuses), and a dark "
            "column a unit that is silent for every class."
        ),
        alt="Heatmap of mean hidden-unit activation per class, units grouped by preferred class.",
        draw="pipeline.plots.activations:class_activation_heatmap",
    ),
    FigureSpec(
        id="projections",
        stage="visualize",
        section="activations",
        title="The data seen by the network: 2-D projections",
        caption=(
            "Each dot is a test sample, coloured by its true class, squeezed into two dimensions: by PCA "
            "(top, the two directions of largest variance, distances roughly kept) and by t-SNE (bottom, "
            "keeps neighbours close, distances between clusters mean little). Left: the inputs; right: the "
            "last hidden layer. If the classes form cleaner, more separate clusters on the right, the "
            "network has rearranged the data so the last layer can split them with straight lines. The "
            "silhouette score (from -1 to 1, higher is better separated) puts a number on it."
        ),
        alt=(
            "Scatter plots of PCA and t-SNE projections of the inputs and of the last hidden layer, by class."
        ),
        draw="pipeline.plots.activations:projections",
        regression_caption=(
            "Each dot is a test sample, coloured by its actual target value (the colour bar; one scale for "
            "all four panels), squeezed into two dimensions: by PCA (top, the two directions of largest "
            "variance, distances roughly kept) and by t-SNE (bottom, keeps neighbours close, distances "
            "between far-apart groups mean little). Left: the inputs; right: the last hidden layer. If the "
            "colours run more smoothly from one side to the other on the right, the network has arranged "
            "the data so that its last layer can read the target off along a straight direction. The "
            "neighbour R² puts a number on it: each sample's value guessed by the mean of its 10 nearest "
            "neighbours in the panel (1: neighbours share their value; 0 or below: the layout says nothing "
            "about it)."
        ),
    ),
    FigureSpec(
        id="conv_feature_maps",
        stage="visualize",
        section="activations",
        title="Feature maps: what each conv block sees",
        caption=(
            "For a few test images (rows), the image and then the first channels each convolutional block "
            "produced for it, after its activation: bright where that channel's filter matched. The first "
            "block's maps still look like the digit, picking out its strokes and edges; deeper blocks, "
            "after pooling, are coarser and respond to larger parts (a loop, a crossing), which is how a "
            "CNN builds shapes out of strokes. A channel that is dark for every image is dead."
        ),
        alt="Grid of test images and the activation maps of each convolutional block's first channels.",
        draw="pipeline.plots.conv:feature_maps",
    ),
    FigureSpec(
        id="grad_cam_classes",
        stage="visualize",
        section="activations",
        title="Where the network looks, per class (Grad-CAM)",
        caption=(
            "Grad-CAM (Selvaraju et al., 2017; Captum's LayerGradCam on the last convolutional layer) weighs "
            "each of that layer's feature maps by how much it raises a class's score (its average gradient) "
            "and adds them up: the heatmap shows the regions whose features speak for the class, upsampled "
            "onto the image. Here, per class, the map averaged over its correctly classified test images, "
            "over their mean image. Maps on the strokes that tell this digit from the others (the loop of "
            "a 6, the crossing of a 4) show the network uses the digit's shape; maps on the background or "
            "the border would show it learned something else."
        ),
        alt="Per class, the mean test image with its average Grad-CAM heatmap over it.",
        draw="pipeline.plots.conv:grad_cam_classes",
    ),
    # errors
    FigureSpec(
        id="error_gallery",
        stage="visualize",
        section="errors",
        title="The worst mistakes",
        caption=(
            "The test samples the network got wrong, worst first: those to which it gave the lowest "
            "probability for the true class. Each shows the true and the predicted class with their "
            "probabilities and a bar per class (green: true class, red: predicted). Confident mistakes (a "
            "tall red bar) on samples a person finds easy point to a gap in what the network learned; "
            "mistakes on ambiguous or mislabelled samples are forgivable. For tabular data the table lists "
            "the sample's most unusual feature values (z-score: how many standard deviations from the "
            "training mean)."
        ),
        alt="Gallery of misclassified test samples with true and predicted labels and class probabilities.",
        draw="pipeline.plots.activations:error_gallery",
        regression_title="The largest errors",
        regression_caption=(
            "The test samples with the largest absolute error |predicted − actual|, largest first, in the "
            "target's own units: the green dot is the actual value, the red diamond the network's "
            "prediction, on one axis shared by all rows (the title gives both and their difference; + means "
            "predicted too high). Large errors on samples with ordinary feature values point to what the "
            "features cannot explain (noise in the target); large errors on samples with extreme values "
            "show where the network extrapolates. For tabular data the table lists the sample's most "
            "unusual feature values (z-score: how many standard deviations from the training mean)."
        ),
    ),
    FigureSpec(
        id="grad_cam_errors",
        stage="visualize",
        section="errors",
        title="Where the network looked when it was wrong (Grad-CAM)",
        caption=(
            "The worst mistakes again, each under the Grad-CAM map of the class the network wrongly chose: "
            "the regions that convinced it. A map on a stroke that really does resemble the other digit "
            "explains an understandable mistake; a map on a smudge, the background or the edge of the "
            "frame points to a shortcut the network learned."
        ),
        alt="The worst misclassified test images with the Grad-CAM heatmap of the predicted class.",
        draw="pipeline.plots.conv:grad_cam_errors",
        regression_title="Where the network looked for its largest errors (Grad-CAM)",
        regression_caption=(
            "The largest errors again, each under the Grad-CAM map of the network's single output: the "
            "regions whose features raised the prediction. A map on the part of the image that should "
            "decide the value explains an understandable error; a map on the background or the edge of the "
            "frame points to a shortcut the network learned."
        ),
    ),
)

_BY_ID = {figure.id: figure for figure in FIGURES}


def spec(figure_id: str) -> FigureSpec:
    """The registry entry of ``figure_id``; an unknown id raises a ValueError naming the known ones."""
    try:
        return _BY_ID[figure_id]
    except KeyError:
        raise ValueError(
            f"Unknown figure id {figure_id!r}; the registry (pipeline/figures.py) has: {', '.join(_BY_ID)}"
        ) from None


def draw_function(figure_id: str) -> Callable[..., Figure]:
    """The function that draws ``figure_id``, imported now (this is where matplotlib gets loaded)."""
    module, _, name = spec(figure_id).draw.partition(":")
    function: Callable[..., Figure] = getattr(importlib.import_module(module), name)
    return function


def in_section(section: str) -> list[FigureSpec]:
    """The figures of one report section, in report order; an unknown section raises a ValueError."""
    known = [sid for sid, _ in SECTIONS]
    if section not in known:
        raise ValueError(f"Unknown report section {section!r}; the sections are: {', '.join(known)}")
    return [figure for figure in FIGURES if figure.section == section]


def of_stage(stage: str) -> list[FigureSpec]:
    """The figures one stage draws, in report order."""
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; figures are drawn by: {', '.join(STAGES)}")
    return [figure for figure in FIGURES if figure.stage == stage]


__all__ = ["FIGURES", "SECTIONS", "STAGES", "FigureSpec", "draw_function", "in_section", "of_stage", "spec"]
