public import Foundation

extension Date {
    /// This instant rounded down to the millisecond: the precision every store keeps.
    /// Truncating again changes nothing.
    public var truncatedToMilliseconds: Date {
        Date(timeIntervalSince1970: Double(flooredEpochMilliseconds) / 1000)
    }

    /// Whole milliseconds since 1970, rounded down. Most millisecond instants have no exact
    /// binary form (`…34.984` is stored as `…34.98399999`), so a value within a microsecond of
    /// a whole millisecond counts as that millisecond; otherwise a truncated instant would
    /// print, and truncate again, one millisecond early.
    var flooredEpochMilliseconds: Int64 {
        let milliseconds = timeIntervalSince1970 * 1000
        let nearest = milliseconds.rounded()
        return Int64(abs(milliseconds - nearest) < 0.001 ? nearest : milliseconds.rounded(.down))
    }

    /// Whole milliseconds since 1970, rounded: how instants of millisecond precision compare
    /// exactly, whatever floating-point path they took.
    public var epochMilliseconds: Int64 {
        Int64((timeIntervalSince1970 * 1000).rounded())
    }

    /// RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-11-24T10:00:00.123Z`.
    public var rfc3339: String {
        let totalMillis = flooredEpochMilliseconds
        var days = totalMillis >= 0 ? totalMillis / 86_400_000 : (totalMillis - 86_399_999) / 86_400_000
        let msOfDay = totalMillis - days * 86_400_000
        // Civil-from-days (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(msOfDay / 3_600_000, 2)):"
            + "\(pad(msOfDay / 60_000 % 60, 2)):\(pad(msOfDay / 1000 % 60, 2)).\(pad(msOfDay % 1000, 3))Z"
    }
}
