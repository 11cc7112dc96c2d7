//! Quorum arithmetic, in one place.
//!
//! `q = floor(2n/3) + 1`, which equals `n - f` with `f = floor((n-1)/3)`. Never `2f + 1`:
//! at n = 5 that is 3, and two quorums of 3 out of 5 may share only one (possibly faulty) node.

/// Votes needed for a quorum among `n` validators ("2/3 + 1").
pub const fn quorum(n: usize) -> usize {
    if n == 0 {
        return 1;
    }
    (2 * n) / 3 + 1
}

/// Byzantine validators an `n`-validator set tolerates.
pub const fn max_faulty(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n - 1) / 3
    }
}

/// Messages from a round ahead that prove at least one honest node is there (`f + 1`).
pub const fn one_honest(n: usize) -> usize {
    max_faulty(n) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_table_n1_to_n10() {
        // (n, q, f)
        let table = [
            (1, 1, 0),
            (2, 2, 0),
            (3, 3, 0),
            (4, 3, 1),
            (5, 4, 1),
            (6, 5, 1),
            (7, 5, 2),
            (8, 6, 2),
            (9, 7, 2),
            (10, 7, 3),
        ];
        for (n, q, f) in table {
            assert_eq!(quorum(n), q, "quorum({n})");
            assert_eq!(max_faulty(n), f, "max_faulty({n})");
            assert_eq!(quorum(n), n - max_faulty(n), "q == n - f at n = {n}");
        }
    }

    #[test]
    fn two_quorums_intersect_in_more_than_f_nodes() {
        for n in 1..=64 {
            let (q, f) = (quorum(n), max_faulty(n));
            // Two quorums share at least 2q - n members; more than f of them, so at least one honest.
            assert!(2 * q > n + f, "n = {n}: 2q - n = {} <= f = {f}", 2 * q - n);
            assert!(q <= n, "quorum reachable at n = {n}");
            assert_eq!(n - q, f, "f crashed validators leave a quorum at n = {n}");
        }
    }

    #[test]
    fn two_f_plus_one_is_not_a_quorum_at_n5() {
        let n = 5;
        let two_f_plus_one = 2 * max_faulty(n) + 1;
        assert!(2 * two_f_plus_one <= n + max_faulty(n));
        assert!(quorum(n) > two_f_plus_one);
    }
}
