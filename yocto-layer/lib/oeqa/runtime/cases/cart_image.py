# The payment cart's runtime checks for `bitbake cart-image-dev -c testimage`.
# The checks themselves are the image's cart-selftest command (the QEMU suite
# runs the same one), so they exist once; this case runs it on the booted
# image and reports each failed line.
#
# Module name unique across layers: cart_image.

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage


class CartImageTest(OERuntimeTestCase):
    @OEHasPackage(["cart-app-selftest"])
    @OETestDepends(["ssh.SSHTest.test_ssh"])
    def test_cart_selftest(self):
        # The unit may still be starting (TPM, first provisioning attempt).
        status, output = self.target.run("cart-selftest --wait 60", timeout=120)
        failed = [line for line in output.splitlines() if line.startswith("FAIL")]
        self.assertEqual(status, 0, msg="cart-selftest: %d failed\n%s\n\n%s" % (status, "\n".join(failed), output))

    @OETestDepends(["cart_image.CartImageTest.test_cart_selftest"])
    def test_machine_id_is_kept_on_the_data_partition(self):
        # /etc's changes live on the data partition (overlayfs-etc), so the
        # machine-id written at first boot survives reboots and updates.
        status, output = self.target.run("findmnt -n -o FSTYPE /etc")
        self.assertEqual((status, output.strip()), (0, "overlay"), msg=output)
        status, output = self.target.run("cat /etc/machine-id")
        self.assertEqual(status, 0, msg=output)
        self.assertRegex(output.strip(), r"^[0-9a-f]{32}$")
