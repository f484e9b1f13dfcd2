"""The source document's count_prime, unchanged in behaviour, to check primepool's port.

Run: python3 core/tests/seed_reference.py > core/tests/seed_9900_9999.txt
"""
import math


def count_prime(n):
    def is_prime(x):
        return bool([i for i in range(2, int(math.sqrt(x)) + 1) if not n % i])

    return len([i for i in range(2, n + 1) if is_prime(i)])


if __name__ == "__main__":
    print([count_prime(v) for v in range(9900, 10000)])
