// Package hardness turns the hardness results behind fastattn into code:
// reductions from nearest-neighbour and inner-product search to attention,
// generators of instances with planted solutions, solvers that answer
// through any attention method of the library, and brute-force solvers to
// check them against.
//
// The reductions are adversarial inputs for approximate attention: an
// approximation that answered them fast and within the stated error would
// solve problems believed (under SETH) to need quadratic time.
//
// # Gap approximate Hamming nearest neighbour (Alman & Song, Lemma 4.7)
//
// Input: binary a_1..a_na and b_1..b_nb in {0,1}^d, a threshold t and a gap
// eps. For each i: is some H(a_i, b_j) <= t (yes), or are all
// H(a_i, b_j) > (1+eps) t (no)? Distances are integers, so "no" means all
// distances are >= Far = floor((1+eps) t) + 1; write delta = Far - t >= 1.
//
// Balancing (Remark 4.4): a -> (a, 1-a) in {0,1}^2d has exactly d ones and
// doubles distances, so <(a, 1-a), (b, 1-b)> = (2d - 2H(a,b))/2 = d - H(a,b).
//
// Attention instance (appendix B), attention dimension D = 4d, scale 1/D:
//
//	Q_i    = sqrt(beta) (a_i, 1-a_i, 1_2d)    i < na      (queries)
//	Q_na+i = sqrt(beta) (0_2d, 1_2d)          i < na      (padding rows)
//	K_j    = sqrt(beta) (b_j, 1-b_j, 0_2d)    j < nb      value 1
//	K_nb+j = sqrt(beta) (0_2d, 1_2d)          j < nb      value 0 (dummies)
//
// Every entry is sqrt(beta) or 0, so B = sqrt(beta) in the paper's
// convention. The logits of query i are
//
//	real key j:   beta (d - H_ij) / 4d = beta/4 - gamma H_ij,   gamma = beta / 4d
//	dummy key:    beta 2d / 4d        = beta/2                  (the paper's tau = e^(beta/2))
//
// and the output, the attention mass on the real keys, is
//
//	u_i = S_i / (S_i + nb e^(beta/2)) = r_i / (1 + r_i),
//	S_i = sum_j e^(beta/4 - gamma H_ij),   r_i = e^(-beta/4) (1/nb) sum_j e^(-gamma H_ij).
//
// u is increasing in r. A yes query has one term with H_ij <= t, so
// r_i >= l = e^(-gamma (d + t)) / nb (using beta/4 = gamma d); a no query has
// all nb terms at most e^(-gamma Far), so r_i <= h = e^(-gamma (d + Far)).
// Hence u_i >= YesLower = l/(1+l) or u_i <= NoUpper = h/(1+h), and
//
//	l / h = e^(gamma delta) / nb =: R
//
// separates them iff R > 1, i.e. gamma > ln(nb) / delta. The decision
// threshold (the role of the paper's t~, eq. 12) is the midpoint
// Threshold = (YesLower + NoUpper)/2, and any attention output within
// Eps = (YesLower - NoUpper)/4 of the exact one decides every query outside
// the gap correctly, with the same amount again left for rounding.
//
// Choosing beta. Raising gamma widens the ratio R but shrinks l, and with it
// the error budget, which is about l (1 - 1/R)/4. Maximising
// e^(-gamma (d + t)) (1 - nb e^(-gamma delta)) over gamma gives
// nb e^(-gamma delta) = (d + t)/(d + t + delta), so
//
//	R = 1 + delta/(d + t),   gamma = ln(nb R) / delta,   beta = B^2 = 4 d gamma.
//
// With d = C log n and t = C0 log n this is beta ~ 4 (C / (C0 eps)) ln n:
// B = Theta(sqrt(log n)), the regime of Theorem 1.3, and the budget
// Eps ~ l ~ n^-(1 + (C + C0)/(C0 eps)) is 1/poly(n), as the paper requires. The
// paper instead takes e^(gamma eps t) > 4n (its eq. 13, with beta = B^2 and
// B^2 = 40 C/(C0 eps) log n, a ratio of about n^9), which separates more
// widely but demands a far smaller error; ours is the largest budget this
// construction allows. The construction also wastes a factor e^(-beta/4):
// real logits never exceed beta/4 while the dummies sit at beta/2. We keep
// it, as the paper does, so that D_i = sum_j A_ij lies in [nb tau, 2 nb tau].
//
// # Maximum inner product (docs/ALGORITHMS.md section 6, after Gupta et al.)
//
// Input: vectors a_i, b_j in R^d, a threshold tau and a gap g (g = 1 for
// integer vectors, where there is then no gap). Yes: some <a_i, b_j> >= tau;
// no: all <a_i, b_j> <= tau - g. Attention dimension d+1, scale 1:
//
//	Q_i  = (lambda a_i, lambda (tau - g/2)),   K_j = (b_j, 0) value 1,   K_nb = (0_d, 1) value 0.
//
// The output is u_i = S_i / (S_i + e^(lambda (tau - g/2))),
// S_i = sum_j e^(lambda <a_i, b_j>). A yes query has S_i / dummy >=
// e^(lambda g/2); a no query has S_i / dummy <= nb e^(-lambda g/2). With
// lambda = 2 ln(c nb)/g (c = MaxIPSlack = 8) these are >= c nb and <= 1/c:
// u_i >= (c nb)/(1 + c nb) ~ 1 or u_i <= 1/(1+c) = 1/9. The threshold is
// again the midpoint and the budget a quarter of the difference, about 0.22:
// a constant error suffices, and the hardness lies instead in the entries,
// whose size lambda grows like log n (any temperature).
//
// # Solving through attention
//
// Attention.Solve calls fastattn.Attend with the reduction's scale, the
// chosen method and the error target Eps (with max|V| = 1, the library's
// contract |T - Att| <= eps max|V| is exactly the additive error the
// derivation budgets). A Solution is Certified when the method's a priori
// error bound is within Eps; its answers then agree with brute force on
// every query outside the gap.
//
// # Instance directories
//
// WriteInstance stores an instance as .npy files (the vectors and the
// attention tensors) and instance.json (NewANNFile, NewMaxIPFile), all or
// none; ReadInstance loads one back as an Attention to solve, and
// Instance.Check answers it by brute force from its vectors and counts the
// disagreements outside the gap. The command fastattn hard writes, solves
// and checks such directories.
package hardness
